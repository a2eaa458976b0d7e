"""Run 5, clock skew: a pool whose clock runs ``skew`` seconds ahead, next to a healthy pool.

The skewed worker runs under libfaketime (``LD_PRELOAD``, ``FAKETIME=+30s``: every clock the C
library reports moves, ``time.time()``, ``time.monotonic()`` and ``datetime.now()`` included),
or, without libfaketime, with a ``sitecustomize`` that shifts ``time.time``. Each job records
both the worker's own clock and Redis's, so the run shows the skew really was there.

The healthy pool holds long jobs (``retries=0``: a job taken from it would end failed with a
``WorkerLost`` error); if staleness were judged by the skewed pool's clock, its reaper would
find the healthy heartbeats ``skew`` seconds old and steal them. Meanwhile the skewed pool,
the only one with free slots, runs jobs delayed by up to 10 s (``delay=``, and one ``at=`` from
the harness's own, correct clock): none may start before its due time on the Redis clock.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiotaskq import Queue
from aiotaskq.testing import RedisServer

from . import app
from .harness import (
    Context,
    Fleet,
    Result,
    clocked_runs,
    fleet,
    held,
    job_fields,
    pool_flags,
    pools,
    queue_name,
    redis_ms,
    stats,
    statuses_text,
    wait_drained,
    wait_for,
    wait_registered,
)  # fmt: skip

TITLE = "Clock skew (a pool 30 s ahead)"
DEFAULTS: dict[str, Any] = {
    "skew": 30.0, "hold": 4, "hold_s": 14.0, "delays": "1,5,10", "at_s": 10.0, "stale": 3.0, "heartbeat": 0.5,
    "timeout": 90.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"hold_s": 5.0, "delays": "1,2", "at_s": 2.0, "stale": 1.5, "heartbeat": 0.3, "timeout": 40.0}
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def skewed_env(skew: float) -> tuple[str, dict[str, str]]:
    """How to run a process with its clock ``skew`` seconds ahead: (method, environment)."""
    lib = os.environ.get("FAULTS_LIBFAKETIME") or (str(LIBFAKETIME) if LIBFAKETIME.exists() else "")
    if lib == "none":  # FAULTS_LIBFAKETIME=none: use the sitecustomize fallback
        lib = ""
    elif not lib and shutil.which("faketime"):
        found = sorted(Path("/usr/lib").glob("**/faketime/libfaketime.so.1"))
        lib = str(found[0]) if found else ""
    if lib:
        return f"libfaketime ({lib}), FAKETIME=+{skew:g}s", {"LD_PRELOAD": lib, "FAKETIME": f"+{skew:g}s"}
    hook = str(Path(__file__).parent / "skewclock")  # Fleet puts it first on PYTHONPATH
    return f"sitecustomize shifting time.time by {skew:g}s (libfaketime not found)", {
        "PYTHONPATH": hook, "FAULTS_CLOCK_SKEW": repr(skew)}  # fmt: skip


async def run(ctx: Context, result: Result) -> None:
    with RedisServer() as server:
        q = Queue(queue_name("skew"), url=server.url)
        tasks = app.register(q)
        try:
            async with fleet(ctx, result, q.name, server.url) as f:
                await _run(ctx, result, q, tasks, f, server.url)
        finally:
            await q.close()


async def _run(ctx: Context, result: Result, q: Queue, tasks: app.Tasks, f: Fleet, url: str) -> None:
    p = ctx.params
    hold, delays = int(p["hold"]), [float(d) for d in str(p["delays"]).split(",")]
    flags = pool_flags(concurrency=hold, heartbeat=p["heartbeat"], stale=p["stale"], poll=1.0)
    healthy = f.start(url, flags, name="healthy")
    healthy_id = (await wait_registered(q, [healthy], 30))[healthy.pid]
    hold_jobs = await tasks.work.options(retries=0).enqueue_many([(n, round(p["hold_s"] * 1000)) for n in range(hold)])
    hold_ids = [j.id for j in hold_jobs if j is not None]

    async def all_held() -> bool:
        return len(await held(q, healthy_id)) == hold

    await wait_for(all_held, "the healthy pool to hold its jobs", 10)
    method, env = skewed_env(p["skew"])
    skewed = f.start(url, flags, name="skewed", env=env)
    skewed_id = (await wait_registered(q, [skewed], 30))[skewed.pid]
    ctx.say(f"healthy pool holds {hold} jobs for {p['hold_s']:g}s; skewed pool (+{p['skew']:g}s) is up")

    delayed: list[tuple[str, float]] = []  # job id, seconds of delay asked
    n = hold
    for d in delays:
        job = await tasks.work.options(delay=d, retries=0).enqueue(n, 0)
        assert job is not None
        delayed.append((job.id, d))
        n += 1
    at_job = await tasks.work.options(at=datetime.now(UTC) + timedelta(seconds=p["at_s"]), retries=0).enqueue(n, 0)
    assert at_job is not None

    beat_ages: list[int] = []
    seen: set[str] = set()
    total = hold + len(delays) + 1

    async def watch() -> bool:  # heartbeats on the Redis clock, and both pools still registered
        now, live = await redis_ms(q.redis), await pools(q)
        seen.update(live)
        beat_ages.extend(now - int(score) for score in live.values())
        s = await stats(q)
        return s.get("succeeded", 0) + s.get("failed", 0) >= total

    await wait_for(watch, "every job to end", p["hold_s"] + max(delays) + 30, step=0.2)
    await wait_drained(q, total, 10)
    await _verify(result, q, p, hold_ids, delayed, at_job.id, healthy.pid, skewed.pid, healthy_id, skewed_id,
                  beat_ages, seen, method)  # fmt: skip


async def _verify(result: Result, q: Queue, p: dict[str, Any], hold_ids: list[str], delayed: list[tuple[str, float]],
                  at_id: str, healthy_pid: int, skewed_pid: int, healthy_id: str, skewed_id: str, beat_ages: list[int],
                  seen: set[str], method: str) -> None:  # fmt: skip
    ids = hold_ids + [i for i, _ in delayed] + [at_id]
    rows = await job_fields(q.redis, q, ids, "status", "attempts", "pool", "enq_at", "due_at", "start_at", "error")
    info = {i: [x.decode() if x is not None else "" for x in row] for i, row in zip(ids, rows, strict=True)}
    started = await clocked_runs(q)
    offsets = {pid: [local - redis for starts in started.values() for pid2, local, redis in starts if pid2 == pid]
               for pid in (healthy_pid, skewed_pid)}  # fmt: skip
    skew_seen = _median(offsets[skewed_pid]) / 1000
    late = {i: (int(info[i][5]) - int(info[i][4])) / 1000 for i in ids[len(hold_ids) :]}
    waited = {i: (int(info[i][5]) - int(info[i][3])) / 1000 for i, _ in delayed}
    s = await stats(q)
    result.jobs = len(ids)
    result.lost = sum(1 for i in ids if info[i][0] != "succeeded")
    result.duplicates = sum(len(v) - 1 for v in started.values())
    result.duplicate_bound = 0
    result.headline = (f"skew seen {skew_seen:+.1f}s; 0 steals expected, {s.get('requeued', 0)} requeued; "
                       f"earliest start {min(late.values()):+.3f}s vs due")  # fmt: skip
    result.figures.update({
        "clock shift method": method,
        "skewed worker's clock vs Redis (median over its jobs)": f"{skew_seen:+.3f}s",
        "healthy worker's clock vs Redis": f"{_median(offsets[healthy_pid]) / 1000:+.3f}s",
        "pool settings": f"stale_timeout {p['stale']:g}s, heartbeat_interval {p['heartbeat']:g}s",
        "healthy pool's jobs": f"{len(hold_ids)} held {p['hold_s']:g}s each (retries=0); "
                               f"requeued by a reaper: {s.get('requeued', 0)}",
        "heartbeat ages seen (Redis clock, both pools)": f"{min(beat_ages) / 1000:+.3f}s to "
                                                         f"{max(beat_ages) / 1000:+.3f}s",
        "delayed jobs: start - due (Redis clock)": ", ".join(
            f"delay {d:g}s: {late[i]:+.3f}s" for i, d in delayed) + f", at=+{p['at_s']:g}s: {late[at_id]:+.3f}s",
        "delayed jobs: start - enqueue (Redis clock)": ", ".join(f"delay {d:g}s: {waited[i]:.3f}s" for i, d in delayed),
        "end states": statuses_text(Counter(info[i][0] for i in ids)),
    })  # fmt: skip
    result.check(f"the skewed worker's clock really ran about {p['skew']:g}s ahead",
                 abs(skew_seen - p["skew"]) < 2)  # fmt: skip
    result.check("no job of the healthy pool was requeued (stats: requeued 0)", s.get("requeued", 0) == 0)
    result.check("the healthy pool's jobs ran once, on it, and succeeded",
                 all(info[i][0] == "succeeded" and info[i][1] == "1" and info[i][2] == healthy_id for i in hold_ids)
                 and all(len(started.get(n, [])) == 1 for n in range(len(hold_ids))))  # fmt: skip
    result.check("neither pool was ever declared dead (each kept its one pool id)", seen == {healthy_id, skewed_id})
    result.check("every heartbeat is stamped with Redis time (no age beyond stale_timeout, none in the future)",
                 all(-50 <= a <= p["stale"] * 1000 for a in beat_ages))  # fmt: skip
    result.check("the delayed jobs ran on the skewed pool",
                 all(info[i][2] == skewed_id for i, _ in delayed) and info[at_id][2] == skewed_id)  # fmt: skip
    result.check("no delayed job started before its due time (Redis clock)", all(x >= 0 for x in late.values()))
    result.check("each delayed job waited at least its delay after its enqueue",
                 all(waited[i] >= d for i, d in delayed))  # fmt: skip
    result.check("every job succeeded", result.lost == 0)


def _median(values: list[int]) -> float:
    return float(sorted(values)[len(values) // 2]) if values else float("nan")
