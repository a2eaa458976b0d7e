"""Run 1, worker kills: SIGKILL a random worker every few seconds while the queue drains.

Every job must succeed. A job runs twice only if it was in flight in a killed worker, so the
duplicate runs are bounded by the jobs the killed pools held at their death (their sets
``pool:<id>``, frozen once the process is dead). The time from a kill to the requeue of its
jobs is the time until the pool's id leaves the ``pools`` zset: the reap script removes the
pool and requeues its jobs in one call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from aiotaskq import Queue
from aiotaskq.testing import RedisServer

from . import app
from .harness import (
    Context,
    Fleet,
    Result,
    enqueue_work,
    fleet,
    pool_flags,
    pool_of,
    pools,
    queue_name,
    redis_ms,
    stats,
    statuses_text,
    summary,
    tally,
    wait_drained,
    wait_registered,
)  # fmt: skip

TITLE = "Worker kills"
DEFAULTS: dict[str, Any] = {
    "jobs": 20_000, "workers": 4, "concurrency": 4, "every": 2.0, "kill_for": 30.0,
    "stale": 3.0, "heartbeat": 0.5, "retries": 25, "max_ms": 50, "timeout": 300.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"jobs": 1_000, "concurrency": 2, "every": 1.0, "kill_for": 4.0, "stale": 1.5,
                         "heartbeat": 0.3, "timeout": 60.0}  # fmt: skip


@dataclass
class Kill:
    pid: int
    pool_id: str | None
    at: float  # monotonic
    beat_age_ms: int  # how old the pool's last heartbeat was at the kill (Redis clock)
    held: set[str]
    requeued_after: float | None = None


async def run(ctx: Context, result: Result) -> None:
    p = ctx.params
    with RedisServer() as server:
        q = Queue(queue_name("kills"), url=server.url)
        tasks = app.register(q)
        try:
            async with fleet(ctx, result, q.name, server.url) as f:
                await _run(ctx, result, q, tasks, f, server.url, p)
        finally:
            await q.close()


async def _run(ctx: Context, result: Result, q: Queue, tasks: app.Tasks, f: Fleet, url: str, p: dict[str, Any]
               ) -> None:  # fmt: skip
    jobs = int(p["jobs"])
    flags = pool_flags(concurrency=p["concurrency"], heartbeat=p["heartbeat"], stale=p["stale"])
    result.jobs = jobs
    ids = await enqueue_work(q, tasks, ctx, jobs, retries=p["retries"], max_ms=p["max_ms"])
    for _ in range(p["workers"]):
        f.start(url, flags)
    await wait_registered(q, f.workers, 30)
    ctx.say(f"{jobs:,} jobs, {p['workers']} workers; a SIGKILL every {p['every']:g}s for {p['kill_for']:g}s")
    t0 = time.monotonic()
    kills: list[Kill] = []
    async with anyio.create_task_group() as tg:
        while time.monotonic() - t0 < p["kill_for"]:
            await anyio.sleep(p["every"])
            if (await stats(q)).get("succeeded", 0) >= jobs:
                break
            kill = await _kill_one(ctx, q, f, url, flags)
            kills.append(kill)
            tg.start_soon(_watch_reap, q, kill, p["stale"] * 3 + 10)
        ctx.say(f"{len(kills)} kills done; draining")
        await wait_drained(q, jobs, p["timeout"])
    seconds = time.monotonic() - t0
    t = await tally(q, ids)
    s = await stats(q)
    bound = sum(len(k.held) for k in kills)
    latencies = [k.requeued_after for k in kills if k.requeued_after is not None and k.held]
    result.lost, result.duplicates, result.duplicate_bound = t.lost, t.duplicates, bound
    result.headline = f"kill → requeue {summary(latencies)} (min/median/max)"
    result.figures.update({
        "jobs / workers / kills": f"{jobs:,} / {p['workers']} (concurrency {p['concurrency']}) / "
                                  f"{len(kills)} SIGKILLs, one every {p['every']:g}s",
        "pool settings": f"stale_timeout {p['stale']:g}s, heartbeat_interval {p['heartbeat']:g}s",
        "end states": statuses_text(t.statuses),
        "jobs lost": str(t.lost),
        "jobs in flight in the killed pools": f"{bound} in all (per kill {summary_int([len(k.held) for k in kills])})",
        "duplicate runs": f"{t.duplicates} (bound: {bound}, the jobs in flight at the kills)",
        "jobs requeued by the reaper": f"{s.get('requeued', 0)} (extra attempts counted: {t.extra_attempts})",
        "kill → requeue (min / median / max)": summary(latencies),
        "heartbeat age at the kill (min / median / max)": summary([k.beat_age_ms / 1000 for k in kills]),
        "expected kill → requeue": f"about 1.5 to 2.5 s (crash detection: ticks missed, connection closed); "
                                   f"at most stale_timeout - heartbeat age plus one heartbeat_interval: "
                                   f"{p['stale'] - p['heartbeat']:g} to {p['stale'] + p['heartbeat']:g}s",
        "wall time (kills + drain)": f"{seconds:.1f}s ({jobs / seconds:,.0f} jobs/s)",
    })  # fmt: skip
    result.check("every job succeeded", t.statuses["succeeded"] == jobs)
    result.check("every job ran at least once", t.never_ran == 0)
    result.check("duplicate runs ≤ jobs in flight at the kills", t.duplicates <= bound)
    result.check("the reaper requeued exactly the jobs the killed pools held", s.get("requeued", 0) == bound)
    result.check("every killed pool was reaped", all(k.requeued_after is not None for k in kills if k.pool_id))
    slack = 1.5  # a loaded 2-core box
    result.check(
        f"every requeue within stale_timeout + heartbeat_interval + {slack:g}s",
        all(x <= p["stale"] + p["heartbeat"] + slack for x in latencies),
    )


async def _kill_one(ctx: Context, q: Queue, f: Fleet, url: str, flags: list[str]) -> Kill:
    """SIGKILL a random registered worker, start its replacement, and note what the victim held."""
    live = await pools(q)
    registered = [w for w in f.alive() if any(pid_of(pool_id) == w.pid for pool_id in live)]
    victim = ctx.rng.choice(registered or f.alive())
    pool_id = await pool_of(q, victim.pid)
    now_ms = await redis_ms(q.redis)
    victim.process.kill()
    at = time.monotonic()
    f.start(url, flags)  # a supervisor restarts it
    victim.process.wait(10)
    await anyio.sleep(0.1)  # anything the victim sent before it died has run by now
    held = set()
    beat_age = 0
    if pool_id is not None:
        held = {x.decode() for x in await q.redis.smembers(q.keys.pool(pool_id))}  # type: ignore[union-attr]
        beat_age = now_ms - int(live.get(pool_id, now_ms))
    return Kill(victim.pid, pool_id, at, beat_age, held)


async def _watch_reap(q: Queue, kill: Kill, timeout: float) -> None:
    if kill.pool_id is None:
        return
    with anyio.move_on_after(timeout):
        while True:  # polled: the reap script publishes nothing when it removes a pool
            if await q.redis.zscore(q.keys.pools, kill.pool_id) is None:
                kill.requeued_after = time.monotonic() - kill.at
                return
            await anyio.sleep(0.01)


def pid_of(pool_id: str) -> int:
    return int(pool_id.split(":")[-2])


def summary_int(values: list[int]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    return f"min {v[0]}, median {v[len(v) // 2]}, max {v[-1]}"
