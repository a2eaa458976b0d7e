"""Run 2, Redis restarts: Redis with ``appendonly yes`` and ``appendfsync always`` goes away twice
while the queue drains, once stopped (SIGTERM) and once crashed (SIGKILL), and comes back on the
same port and data directory.

No job may be lost, the same worker processes go on under the same pool ids (they reconnect by
themselves), and no job is requeued, because each outage is shorter than ``stale_timeout``. The
stall is the gap in the jobs' end times (``end_at``, Redis clock) around each outage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.exceptions import RedisError

from aiotaskq import Queue
from aiotaskq.testing import RedisServer

from . import app
from .harness import (
    Context,
    Fleet,
    Result,
    enqueue_work,
    fleet,
    in_thread,
    job_fields,
    pool_flags,
    pools,
    queue_name,
    runs,
    stats,
    statuses_text,
    tally,
    wait_drained,
    wait_for,
    wait_registered,
)  # fmt: skip

TITLE = "Redis restarts (AOF, appendfsync always)"
DEFAULTS: dict[str, Any] = {
    "jobs": 10_000, "workers": 2, "concurrency": 10, "stale": 10.0, "heartbeat": 0.5, "down": 1.0,
    "first_at": 0.3, "second_at": 0.65, "retries": 5, "max_ms": 50, "timeout": 180.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"jobs": 1_000, "concurrency": 5, "stale": 5.0, "heartbeat": 0.3, "down": 0.5,
                         "timeout": 60.0}  # fmt: skip


def tolerant(cond: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """A condition that is simply false while Redis is away."""

    async def check() -> bool:
        try:
            return await cond()
        except (RedisError, OSError):
            return False

    return check


async def run(ctx: Context, result: Result) -> None:
    with RedisServer(appendonly=True) as server:
        q = Queue(queue_name("restart"), url=server.url)
        tasks = app.register(q)
        try:
            async with fleet(ctx, result, q.name, server.url) as f:
                await _run(ctx, result, q, tasks, f, server, ctx.params)
        finally:
            await q.close()


async def _run(ctx: Context, result: Result, q: Queue, tasks: app.Tasks, f: Fleet, server: RedisServer,
               p: dict[str, Any]) -> None:  # fmt: skip
    jobs = result.jobs = int(p["jobs"])
    ids = await enqueue_work(q, tasks, ctx, jobs, retries=p["retries"], max_ms=p["max_ms"])
    flags = pool_flags(concurrency=p["concurrency"], heartbeat=p["heartbeat"], stale=p["stale"])
    for _ in range(p["workers"]):
        f.start(server.url, flags)
    first_ids = await wait_registered(q, f.workers, 30)
    t0 = time.monotonic()
    outages: list[tuple[str, int, int, int]] = []  # how, stop asked (ms), gone (ms), back (ms)
    for at, how in ((p["first_at"], "SIGTERM"), (p["second_at"], "SIGKILL")):

        async def reached(at: float = at) -> bool:
            return (await stats(q)).get("succeeded", 0) >= at * jobs

        await wait_for(tolerant(reached), f"{at:.0%} of the jobs to end", p["timeout"])
        ctx.say(f"{how} to redis-server at {at:.0%} done; back in {p['down']:g}s")
        asked = wall_ms()
        await in_thread(server.stop if how == "SIGTERM" else server.kill)
        gone = wall_ms()
        await anyio.sleep(p["down"])
        await in_thread(server.start)
        outages.append((how, asked, gone, wall_ms()))
    await wait_for(tolerant(lambda: _drained(q, jobs)), f"{jobs} jobs to end", p["timeout"])
    await wait_drained(q, jobs, 10)
    seconds = time.monotonic() - t0

    t = await tally(q, ids)
    ends = sorted(int(row[0]) for row in await job_fields(q.redis, q, ids, "end_at") if row[0])
    live = await pools(q)
    started = await runs(q)
    last_back = outages[-1][3]
    ran_after = {pid for starts in started.values() for pid, ms in starts if ms > last_back}
    result.lost, result.duplicates, result.duplicate_bound = t.lost, t.duplicates, 0
    stalls = [_stall(ends, gone) for _, _, gone, _ in outages]
    result.headline = "stall " + " / ".join(f"{s:.2f}s" for s in stalls) + " (outages " + " / ".join(
        f"{(back - gone) / 1000:.2f}s" for _, _, gone, back in outages) + ")"  # fmt: skip
    result.figures["jobs / workers"] = f"{jobs:,} / {p['workers']} (concurrency {p['concurrency']})"
    result.figures["pool settings"] = f"stale_timeout {p['stale']:g}s, heartbeat_interval {p['heartbeat']:g}s"
    for (how, asked, gone, back), stall in zip(outages, stalls, strict=True):
        result.figures[f"restart by {how}"] = (
            f"Redis gone {(gone - asked) / 1000:.2f}s after the signal, away {(back - gone) / 1000:.2f}s; "
            f"no job ended for {stall:.2f}s (the stall); first end {_first_after(ends, gone, back):.2f}s after "
            f"Redis was back"
        )  # fmt: skip
    result.figures.update({
        "end states": statuses_text(t.statuses),
        "jobs lost": str(t.lost),
        "duplicate runs": f"{t.duplicates} (none expected: no pool was declared dead)",
        "extra attempts (jobs requeued or retried)": str(t.extra_attempts),
        "wall time": f"{seconds:.1f}s",
    })  # fmt: skip
    result.check("every job succeeded", t.statuses["succeeded"] == jobs)
    result.check("every worker process is still running", all(w.alive() for w in f.workers))
    result.check("every pool kept its registration (no pool was declared dead)",
                 set(first_ids.values()) <= set(live))  # fmt: skip
    result.check("every worker ran jobs after the last restart (reconnected by itself)",
                 all(w.pid in ran_after for w in f.workers))  # fmt: skip
    result.check("no job was requeued or retried", t.extra_attempts == 0 and (await stats(q)).get("requeued", 0) == 0)
    result.check("no duplicate run", t.duplicates == 0)


async def _drained(q: Queue, jobs: int) -> bool:
    s = await stats(q)
    return s.get("succeeded", 0) + s.get("failed", 0) >= jobs


def wall_ms() -> int:
    return int(time.time() * 1000)


def _stall(ends: list[int], gone: int) -> float:
    """The gap in end times that spans the moment Redis went away, in seconds."""
    before = [e for e in ends if e <= gone]
    after = [e for e in ends if e > gone]
    if not before or not after:
        return float("nan")
    return (after[0] - before[-1]) / 1000


def _first_after(ends: list[int], gone: int, back: int) -> float:
    after = [e for e in ends if e > gone]
    return (after[0] - back) / 1000 if after else float("nan")
