"""Run 7, master failover: the master that holds the queue is SIGKILLed mid-drain, once on a
Redis Cluster (3 masters, 3 replicas, ``redis+cluster://`` URL) and once behind Sentinel (a
master, a replica, three sentinels, ``redis+sentinel://`` URL); a replica takes over after the
node timeout (cluster) or ``down-after-milliseconds`` (Sentinel).

The worker processes must find the new master by themselves; no job may be lost. Jobs may run
twice: replication is asynchronous, so the last claims and outcomes before the kill may never
reach the replica, and those jobs run again (bounded by the jobs the pools held). The tasks
record their runs on a Redis of their own, which the failover does not touch. The stall is
the gap in the jobs' end times around the kill.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

from redis.exceptions import RedisError

from aiotaskq import Queue
from aiotaskq.testing import LocalCluster, LocalSentinel, RedisServer

from . import app
from .harness import (  # fmt: skip
    Context,
    Result,
    enqueue_work,
    fleet,
    in_thread,
    job_fields,
    pool_flags,
    queue_name,
    runs,
    statuses_text,
    wait_for,
    wait_registered,
)
from .restart import tolerant, wall_ms

TITLE = "Master failover (Redis Cluster, Sentinel)"
DEFAULTS: dict[str, Any] = {
    "jobs": 5_000, "workers": 2, "concurrency": 10, "stale": 10.0, "heartbeat": 0.5, "at": 0.3,
    "max_ms": 10, "node_timeout_ms": 1000, "timeout": 240.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"jobs": 1_000, "timeout": 120.0}


async def run(ctx: Context, result: Result) -> None:
    p = ctx.params
    result.jobs = 0
    result.lost = result.duplicates = result.duplicate_bound = 0
    for kind in ("cluster", "sentinel"):
        topology: AbstractContextManager[Any]
        if kind == "cluster":
            topology = LocalCluster(masters=3, replicas=1, node_timeout_ms=p["node_timeout_ms"])
        else:
            topology = LocalSentinel(replicas=1, down_after_ms=p["node_timeout_ms"])
        servers = await in_thread(topology.__enter__)
        try:
            with RedisServer() as record:
                await _one(ctx, result, kind, servers, record, p)
        finally:
            await in_thread(functools.partial(topology.__exit__, None, None, None))


def _master_port(kind: str, servers: Any, q: Queue) -> int:
    if kind == "cluster":
        return int(servers.master_port_for_slot(servers.slot(q.keys.jobs)))
    return int(servers.master_port())


async def _one(ctx: Context, result: Result, kind: str, servers: Any, record: RedisServer, p: dict[str, Any]) -> None:
    q = Queue(queue_name(f"failover-{kind}"), url=servers.url)
    recorded = Queue(q.name, url=record.url)  # the same keys, on the record server
    tasks = app.register(q)
    jobs = int(p["jobs"])
    try:
        async with fleet(ctx, result, q.name, record.url) as f:
            ids = await enqueue_work(q, tasks, ctx, jobs, retries=5, max_ms=p["max_ms"])
            flags = pool_flags(concurrency=p["concurrency"], heartbeat=p["heartbeat"], stale=p["stale"])
            for _ in range(p["workers"]):
                f.start(servers.url, flags)
            await wait_registered(q, f.workers, 60)

            async def reached() -> bool:
                return bool(len(await runs(recorded)) >= p["at"] * jobs)

            await wait_for(reached, f"{p['at']:.0%} of the jobs to start", p["timeout"])
            old = await in_thread(lambda: _master_port(kind, servers, q))
            victim = servers.node(old) if kind == "cluster" else servers.server(old)
            ctx.say(f"{kind}: SIGKILL to the master at :{old}")
            gone = wall_ms()
            t_kill = time.monotonic()
            await in_thread(victim.kill)

            async def promoted() -> bool:
                try:
                    return bool(await in_thread(lambda: _master_port(kind, servers, q)) != old)
                except (RedisError, OSError, RuntimeError):
                    return False

            await wait_for(promoted, "a replica to take over", 60)
            took_over = time.monotonic() - t_kill

            async def ended() -> bool:
                rows = await job_fields(q.redis, q, ids, "status")
                return sum(1 for row in rows if row[0] == b"succeeded") == jobs

            await wait_for(tolerant(ended), f"{jobs} jobs to end succeeded", p["timeout"])
            drained = time.monotonic() - t_kill
            rows = await job_fields(q.redis, q, ids, "status", "end_at")
            statuses: Counter[str] = Counter((row[0] or b"<missing>").decode() for row in rows)
            ends = sorted(int(row[1]) for row in rows if row[1])
            started = await runs(recorded)
            duplicates = sum(len(v) - 1 for v in started.values())
            never_ran = sum(1 for n in range(jobs) if n not in started)
            held = p["workers"] * p["concurrency"]
            stall = _gap(ends, gone)
            # a second wave, long jobs, after the failover: each worker must take some of them
            wave = 10 * held
            await enqueue_work(q, tasks, ctx, wave, retries=5, max_ms=50, first=jobs)
            await wait_for(lambda: _all_started(recorded, jobs + wave), f"the {wave} jobs after the failover", 60)
            after = await runs(recorded)
            pids = {pid for n, starts in after.items() if n >= jobs for pid, _ in starts}
            alive = all(w.alive() for w in f.workers)
            served = all(w.pid in pids for w in f.workers)
            for w in f.workers:
                if not w.alive():  # what the run can say of a worker that died
                    result.figures[f"{kind}: worker {w.name} exited"] = (
                        f"code {w.process.returncode}; its log ends:\n```\n{w.log_tail(30)}\n```"
                    )
    finally:
        await q.close()
        await recorded.close()
    lost = jobs - statuses["succeeded"]
    bound = 2 * held  # the jobs held at the kill, and as many whose claim or end the replica missed
    result.jobs += jobs
    result.lost = (result.lost or 0) + lost
    result.duplicates = (result.duplicates or 0) + duplicates
    result.duplicate_bound = (result.duplicate_bound or 0) + bound
    result.headline = (result.headline + "; " if result.headline else "") + f"{kind}: stall {stall:.2f}s"
    result.figures[f"{kind}: set-up"] = (
        f"{jobs:,} jobs, {p['workers']} workers (concurrency {p['concurrency']}), "
        + ("3 masters + 3 replicas" if kind == "cluster" else "1 master + 1 replica + 3 sentinels")
        + f", node timeout {p['node_timeout_ms']} ms; URL {servers.url}"
    )
    result.figures[f"{kind}: a replica took over after"] = f"{took_over:.2f}s"
    result.figures[f"{kind}: no job ended for (the stall)"] = f"{stall:.2f}s"
    result.figures[f"{kind}: every job ended succeeded after"] = f"{drained:.2f}s from the kill"
    result.figures[f"{kind}: end states"] = statuses_text(statuses)
    result.figures[f"{kind}: jobs lost / never ran"] = f"{lost} / {never_ran}"
    result.figures[f"{kind}: duplicate runs"] = f"{duplicates} (bound: {bound}, twice the {held} jobs the pools held)"
    result.check(f"{kind}: every job succeeded", lost == 0)
    result.check(f"{kind}: every worker process is still running", alive)
    result.check(f"{kind}: every worker took jobs enqueued after the failover (found the new master by itself)",
                 served)  # fmt: skip
    result.check(f"{kind}: duplicate runs ≤ {bound}", duplicates <= bound)
    result.check(f"{kind}: jobs ran again within 30 s of the kill", stall < 30)


def _gap(ends: list[int], gone: int) -> float:
    """The longest gap between consecutive job ends from just before the kill on, in seconds
    (``gone`` is taken before the signal is sent, so a few ends may fall after it)."""
    window = [e for e in ends if e >= gone - 500]
    return max((b - a for a, b in itertools.pairwise(window)), default=0) / 1000


async def _all_started(recorded: Queue, n: int) -> bool:
    return len(await runs(recorded)) >= n
