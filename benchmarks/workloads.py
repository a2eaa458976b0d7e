"""The workloads. Each runs as the producer of one repetition, in a fresh subprocess, and
starts the system's worker processes itself (see ``measure.py``).

Every run checks its work: the jobs Redis records as succeeded, and the jobs the workers
ran, must both equal the jobs enqueued, or the run raises ``BenchError`` and its figures
are not reported.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from redis.asyncio import Redis

from .adapter import SLEEP_SECONDS, System, TaskName, load_system
from .measure import (
    BenchError,
    Context,
    Drain,
    Outcome,
    ServerStats,
    Workers,
    check,
    cpu_seconds,
    drain_queue,
    memory_used,
    per_job,
    percentile,
    until_finished,
)

CHUNK = 10_000  # jobs per batch-enqueue call (every system with a batch API gets the same)
LANES = 100  # enqueue calls in flight when a system has no batch API, or for the in-flight rate


# -- enqueueing --------------------------------------------------------------------------------


async def inflight(system: System, task: TaskName, items: list[int], lanes: int = LANES) -> float:
    """Enqueue ``items`` with plain ``enqueue``, ``lanes`` calls in flight: jobs/s."""
    numbers = iter(items)

    async def lane() -> None:
        for i in numbers:
            await system.enqueue(task, i)

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(lanes):
            tg.create_task(lane())
    return len(items) / (time.perf_counter() - t0)


async def batch(system: System, task: TaskName, items: list[int]) -> float:
    """Enqueue ``items`` with the system's batch API, ``CHUNK`` jobs a call: jobs/s."""
    t0 = time.perf_counter()
    for at in range(0, len(items), CHUNK):
        await system.enqueue_batch(task, items[at : at + CHUNK])
    return len(items) / (time.perf_counter() - t0)


async def fill(system: System, task: TaskName, items: list[int]) -> float:
    """Queue ``items`` the fastest way the system offers (its batch API, else 100 calls in flight)."""
    await system.waiting()  # connected before the clock starts
    return await (batch if system.has_batch else inflight)(system, task, items)


async def verify(system: System, drain: Drain, jobs: int) -> None:
    """Every job ran once and Redis records it as succeeded."""
    check("jobs ran in the workers", drain.jobs_run, jobs)
    await check_succeeded(system, jobs)


async def check_succeeded(system: System, jobs: int) -> None:
    outcomes = await system.outcomes()
    if outcomes.get("succeeded", 0) != jobs:
        raise BenchError(f"Redis records {outcomes} for {jobs} jobs enqueued")


# -- W2 latency --------------------------------------------------------------------------------


async def latency(
    ctx: Context, system: System, *, jobs: int, interval: float, warmup: int, concurrency: int
) -> Outcome:
    """An idle worker; jobs enqueued one at a time ``interval`` apart; enqueue-to-start times."""
    key = f"bench:{ctx.queue}:starts"
    group = await Workers.start(ctx, 1, concurrency=concurrency, record=key)
    try:
        await asyncio.sleep(0.5)  # an idle worker, done with its start-up chores
        for i in range(warmup):
            await system.enqueue("noop", -1 - i)
        await until_finished(system)
        await asyncio.sleep(0.5)  # let the worker go idle again (and be done with start-up chores)
        enqueued = await paced_enqueue(system, jobs, interval)
        await until_finished(system)
        (event,) = await group.stop()
    finally:
        await group.close()
    if not await_record(event):
        raise BenchError("the worker did not record its start times")
    check("jobs ran in the worker", int(event["jobs"]), warmup + jobs)
    await check_succeeded(system, warmup + jobs)
    async with Redis.from_url(ctx.url) as r:
        raw = await r.hgetall(key)
    starts = {int(k): float(v) for k, v in raw.items()}
    lat = sorted((starts[i] - enqueued[i]) * 1000 for i in range(jobs))
    return Outcome({
        "latency_p50_ms": percentile(lat, 50), "latency_p95_ms": percentile(lat, 95),
        "latency_p99_ms": percentile(lat, 99), "latency_max_ms": lat[-1],
    }, {"notes": group.notes})  # fmt: skip


def await_record(event: dict[str, Any]) -> bool:
    """Whether the worker got through its shutdown (where it records the start times)."""
    return "last_end" in event


async def paced_enqueue(system: System, jobs: int, interval: float) -> dict[int, float]:
    """Enqueue jobs 0..n-1 on a fixed schedule; the time just before each ``enqueue``."""
    enqueued: dict[int, float] = {}
    t0 = time.monotonic()
    for i in range(jobs):
        wait = t0 + i * interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        enqueued[i] = time.time()
        await system.enqueue("noop", i)
    return enqueued


# -- W1 throughput -----------------------------------------------------------------------------


async def drain(ctx: Context, system: System, *, jobs: int, concurrency: int, inflight: int) -> Outcome:
    """Enqueue rates (100 calls in flight; the batch API where there is one), then one worker
    process drains ``jobs`` queued no-op jobs: rate, CPU and Redis work per job."""
    metrics: dict[str, float] = {}
    await system.waiting()  # connected before the clock starts
    if system.has_batch:
        metrics["enqueue_rate"] = await inflight_rate(ctx, jobs, inflight)
        metrics["enqueue_batch_rate"] = await batch(system, "noop", list(range(jobs)))
    else:
        metrics["enqueue_rate"] = await inflight_on(system, jobs, inflight)
    metrics["enqueue_best_rate"] = max(metrics.values())
    check("jobs waiting", await system.waiting(), jobs)
    d = await drain_queue(ctx, system, workers=1, concurrency=concurrency)
    await verify(system, d, jobs)
    redis_metrics, breakdown = per_job(d.redis, jobs)
    metrics |= {"drain_rate": jobs / d.seconds, "drain_s": d.seconds, "cpu_us_per_job": d.cpu_s / jobs * 1e6}
    metrics |= redis_metrics
    return Outcome(metrics, {"commands_per_job": breakdown, "workers": d.events, "notes": d.notes})


async def inflight_on(system: System, jobs: int, lanes: int) -> float:
    return await inflight(system, "noop", list(range(jobs)), lanes)


async def inflight_rate(ctx: Context, jobs: int, lanes: int) -> float:
    """Plain ``enqueue`` with ``lanes`` calls in flight, on a queue of its own: jobs/s."""
    side = load_system(ctx.system)
    await side.open(ctx.url, ctx.queue + "-plain")
    try:
        await side.enqueue("noop", -1)  # connected, scripts loaded
        rate = await inflight(side, "noop", list(range(jobs)), lanes)
        check("jobs waiting on the side queue", await side.waiting(), jobs + 1)
        return rate
    finally:
        await side.close()


# -- W6 single enqueues in flight ------------------------------------------------------------


async def single(ctx: Context, system: System, *, jobs: int, in_flight: int) -> Outcome:
    """``jobs`` calls of the system's plain one-job enqueue from one process, ``in_flight`` of them
    in flight at any time (what a web app does, one job per request): jobs/s; every job stored."""
    await system.enqueue("noop", -1)  # connected, scripts loaded
    async with Redis.from_url(ctx.url) as r:
        before, cpu0 = await ServerStats.take(r), cpu_seconds()
        rate = await inflight(system, "noop", list(range(jobs)), in_flight)
        cpu, redis = cpu_seconds() - cpu0, (await ServerStats.take(r)).since(before)
    check("jobs waiting", await system.waiting(), jobs + 1)
    return Outcome({
        "single_rate": rate, "single_call_us": in_flight / rate * 1e6, "single_cpu_us": cpu / jobs * 1e6,
        "single_redis_cpu_us": redis["*cpu"] / jobs * 1e6, "single_reads": redis["*reads"] / jobs,
    })  # fmt: skip


# -- W3 I/O-bound ------------------------------------------------------------------------------


async def io(ctx: Context, system: System, *, jobs: int, concurrency: int) -> Outcome:
    """``jobs`` jobs that each sleep 10 ms, drained at ``concurrency``: the time against the ideal."""
    await fill(system, "sleep", list(range(jobs)))
    check("jobs waiting", await system.waiting(), jobs)
    d = await drain_queue(ctx, system, workers=1, concurrency=concurrency)
    await verify(system, d, jobs)
    ideal = math.ceil(jobs / concurrency) * SLEEP_SECONDS
    return Outcome(
        {"io_drain_s": d.seconds, "io_ideal_s": ideal, "io_over_ideal_pct": (d.seconds / ideal - 1) * 100},
        {"notes": d.notes},
    )


# -- W4 scale ----------------------------------------------------------------------------------


async def scale(ctx: Context, system: System, *, jobs: int, workers: int, concurrency: int, measure: int) -> Outcome:
    """``jobs`` no-op jobs waiting: Redis memory per queued job, then the drain rate of
    ``workers`` worker processes over the first ``measure`` jobs (all of them when fewer).

    A partial drain is checked for conservation instead: after the workers stopped, the jobs
    Redis records as succeeded plus those still unfinished must make up every job enqueued.
    """
    total = jobs + 1
    await fill(system, "noop", [-1])  # the queue's keys exist, scripts loaded, connected
    async with Redis.from_url(ctx.url) as r:
        before = await memory_used(r)
        rate = await fill(system, "noop", list(range(jobs)))
        after = await memory_used(r)
    check("jobs waiting", await system.waiting(), total)
    d = await drain_queue(ctx, system, workers=workers, concurrency=concurrency, left=max(total - measure, 0))
    ended = total - d.unfinished
    if d.unfinished == 0:
        await verify(system, d, total)
    else:
        await conserved(system, d, total)
    return Outcome(
        {"fill_rate": rate, "memory_bytes_per_job": (after - before) / jobs, "drain_rate": ended / d.seconds,
         "drain_s": d.seconds, "cpu_us_per_job": d.cpu_s / ended * 1e6,
         "redis_cpu_us_per_job": d.redis["*cpu"] / ended * 1e6},
        {"used_memory_delta": after - before, "measured_jobs": ended, "workers": d.events, "notes": d.notes},
    )  # fmt: skip


async def conserved(system: System, d: Drain, total: int) -> None:
    """After a partial drain: no job lost. What the systems' shutdowns do to the jobs they
    held (put back, recorded as failed, run again later) is noted, not failed."""
    outcomes = {k: v for k, v in (await system.outcomes()).items()
                if k != "other queues" and not k.startswith("not ended")}  # fmt: skip
    unfinished = await system.unfinished()
    recorded = sum(outcomes.values())
    if recorded + unfinished < total:
        raise BenchError(f"{total - recorded - unfinished} jobs lost: Redis records {outcomes} and {unfinished} "
                         f"unfinished for {total} enqueued")  # fmt: skip
    done = outcomes.get("succeeded", 0)
    if d.jobs_run < done:
        raise BenchError(f"Redis records {done} jobs as succeeded, the workers ran {d.jobs_run}")
    if recorded + unfinished > total:
        d.notes.append(f"after the workers stopped, {recorded + unfinished - total} jobs were both recorded "
                       f"as ended and still unfinished")  # fmt: skip
    if recorded > done:
        others = {k: v for k, v in outcomes.items() if k != "succeeded"}
        d.notes.append(f"the workers' shutdown left jobs recorded as {others}")
    if d.jobs_run > done:
        d.notes.append(f"{d.jobs_run - done} jobs ran while the workers shut down but did not end as succeeded")


# -- W5 retries --------------------------------------------------------------------------------


async def retries(ctx: Context, system: System, *, jobs: int, concurrency: int) -> Outcome:
    """``jobs`` jobs that fail once and then succeed, drained by one worker: the time it takes."""
    await fill(system, "flaky", list(range(jobs)))
    check("jobs waiting", await system.waiting(), jobs)
    d = await drain_queue(ctx, system, workers=1, concurrency=concurrency)
    check("attempts that failed on purpose", d.failed_on_purpose, jobs)
    await verify(system, d, jobs)
    return Outcome({"retry_drain_s": d.seconds, "retry_rate": jobs / d.seconds}, {"notes": d.notes})
