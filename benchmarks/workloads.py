"""The workloads. Each runs as the producer of one repetition, in a fresh subprocess,
and starts the system's worker in a subprocess of its own (``benchmarks.worker``).

Times are ``time.time()`` of the same machine in every process. A run whose jobs do
not all end as succeeded raises ``BenchError``: its figures are not reported.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from .adapter import SLEEP_SECONDS, System, TaskName, load_system

SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


class BenchError(Exception):
    """The run did not do the work it was given (jobs lost, a worker died, ...)."""


@dataclass(frozen=True)
class Context:
    system: str
    url: str
    queue: str
    root: Path  # the directory holding the ``benchmarks`` package


@dataclass
class Outcome:
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


# -- the worker subprocess ---------------------------------------------------------------------


class WorkerProcess:
    """``python -m benchmarks.worker`` for one system and queue."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, ctx: Context, *, expect: int, concurrency: int, record: str = "") -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.worker", "--system", ctx.system, "--url", ctx.url,
            "--queue", ctx.queue, "--expect", str(expect), "--concurrency", str(concurrency), "--record", record,
            stdout=asyncio.subprocess.PIPE, cwd=ctx.root,
        )  # fmt: skip
        worker = cls(proc)
        try:
            await worker.next_event("ready")
        except BaseException:
            await worker.close()
            raise
        return worker

    async def next_event(self, name: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                code = await self.proc.wait()
                raise BenchError(f"the worker exited with code {code} before {name!r}")
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # not ours: something the system printed
            if event.get("event") == name:
                return event

    async def close(self, timeout: float = 30.0) -> None:
        """Wait for the worker to exit (it does once done); kill it after ``timeout``."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise BenchError(f"the worker did not exit within {timeout}s of its last job") from None
        if code != 0:
            raise BenchError(f"the worker exited with code {code}")


# -- Redis-side figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStats:
    commands: int
    reads: int
    calls: dict[str, int]

    @classmethod
    async def take(cls, r: Redis) -> ServerStats:
        info = await r.info("all")  # one INFO command: counted, and subtracted below
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        return cls(int(info["total_commands_processed"]), int(info["total_reads_processed"]), calls)

    def per_job(self, before: ServerStats, jobs: int) -> tuple[dict[str, float], dict[str, float]]:
        """Commands (all, also those a Lua script runs), script calls and socket reads per job,
        without the harness's own INFO; and the per-command breakdown."""
        delta = {name: n - before.calls.get(name, 0) for name, n in self.calls.items()}
        delta = {name: n for name, n in delta.items() if n}
        info = delta.pop("info", 0)
        metrics = {
            "cmds_per_job": (self.commands - before.commands - info) / jobs,
            "script_calls_per_job": sum(delta.get(c, 0) for c in SCRIPT_COMMANDS) / jobs,
            "reads_per_job": (self.reads - before.reads - info) / jobs,
        }
        breakdown = {name: n / jobs for name, n in sorted(delta.items(), key=lambda kv: -kv[1])}
        return metrics, breakdown


async def used_memory(r: Redis) -> int:
    return int((await r.info("memory"))["used_memory"])


# -- helpers -----------------------------------------------------------------------------------


async def wait_count(system: System, expect: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (n := await system.succeeded()) < expect:
        if time.monotonic() > deadline:
            raise BenchError(f"only {n} of {expect} jobs succeeded within {timeout}s")
        await asyncio.sleep(0.005)


async def check_succeeded(system: System, expect: int) -> None:
    n = await system.succeeded()
    if n != expect:
        raise BenchError(f"{n} jobs succeeded, {expect} were enqueued")


async def check_waiting(system: System, expect: int) -> None:
    n = await system.waiting()
    if n != expect:
        raise BenchError(f"{n} jobs wait for a worker, {expect} were enqueued")


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear between closest ranks."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=1000, method="inclusive")[round(p * 10) - 1]


# -- latency -----------------------------------------------------------------------------------


async def latency(
    ctx: Context, system: System, *, jobs: int, interval: float, warmup: int, concurrency: int
) -> Outcome:
    """An idle worker; jobs enqueued one at a time ``interval`` apart; enqueue-to-start times."""
    key = f"bench:{ctx.queue}:starts"
    worker = await WorkerProcess.start(ctx, expect=warmup + jobs, concurrency=concurrency, record=key)
    try:
        for i in range(warmup):
            await system.enqueue("noop", -1 - i)
        await wait_count(system, warmup, timeout=30)
        await asyncio.sleep(0.1)  # let the worker go idle again
        enqueued = await paced_enqueue(system, jobs, interval)
        await worker.next_event("done")
    finally:
        await worker.close()
    await check_succeeded(system, warmup + jobs)
    async with Redis.from_url(ctx.url) as r:
        raw = await r.hgetall(key)
    starts = {int(k): float(v) for k, v in raw.items()}
    lat = sorted((starts[i] - enqueued[i]) * 1000 for i in range(jobs))
    return Outcome({
        "latency_p50_ms": percentile(lat, 50), "latency_p95_ms": percentile(lat, 95),
        "latency_p99_ms": percentile(lat, 99), "latency_max_ms": lat[-1],
    })  # fmt: skip


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


# -- drain and io ------------------------------------------------------------------------------


async def drain(
    ctx: Context, system: System, *, jobs: int, concurrency: int, inflight: int, task: TaskName = "noop"
) -> Outcome:
    """Enqueue rates, then one worker drains ``jobs`` queued jobs: rate, CPU and Redis work per job."""
    metrics = {"enqueue_rate": await inflight_rate(ctx, task, jobs, inflight)} if inflight else {}
    await system.waiting()  # connected before the clock starts
    t0 = time.perf_counter()
    await system.enqueue_batch(task, list(range(jobs)))
    metrics["enqueue_batch_rate"] = jobs / (time.perf_counter() - t0)
    await check_waiting(system, jobs)
    done, redis_metrics, breakdown = await run_worker(ctx, jobs, concurrency)
    await check_succeeded(system, jobs)
    seconds = done["recorded_at"] - done["first_start"]
    metrics |= {"drain_rate": jobs / seconds, "drain_s": seconds, "cpu_us_per_job": done["cpu_s"] / jobs * 1e6}
    metrics |= redis_metrics
    return Outcome(metrics, {"commands_per_job": breakdown, "worker": done})


async def io(ctx: Context, system: System, *, jobs: int, concurrency: int) -> Outcome:
    """``jobs`` jobs that each sleep 10 ms, drained at ``concurrency``: the time against the ideal."""
    await system.enqueue_batch("sleep", list(range(jobs)))
    await check_waiting(system, jobs)
    done, _, _ = await run_worker(ctx, jobs, concurrency)
    await check_succeeded(system, jobs)
    seconds = done["recorded_at"] - done["first_start"]
    ideal = math.ceil(jobs / concurrency) * SLEEP_SECONDS
    return Outcome({"io_drain_s": seconds, "io_ideal_s": ideal, "io_over_ideal_pct": (seconds / ideal - 1) * 100})


async def run_worker(
    ctx: Context, jobs: int, concurrency: int
) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """Start a worker on queued jobs and wait until Redis records them all as succeeded."""
    async with Redis.from_url(ctx.url) as r:
        before = await ServerStats.take(r)
        worker = await WorkerProcess.start(ctx, expect=jobs, concurrency=concurrency)
        try:
            done = await worker.next_event("done")
            after = await ServerStats.take(r)
        finally:
            await worker.close()
    metrics, breakdown = after.per_job(before, jobs)
    return done, metrics, breakdown


async def inflight_rate(ctx: Context, task: TaskName, jobs: int, inflight: int) -> float:
    """Plain ``enqueue`` with ``inflight`` calls at once, on a queue of its own: jobs/s."""
    side = load_system(ctx.system)
    await side.open(ctx.url, ctx.queue + "-plain")
    try:
        await side.enqueue(task, -1)  # connected, scripts loaded
        numbers = iter(range(jobs))

        async def lane() -> None:
            for i in numbers:
                await side.enqueue(task, i)

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(inflight):
                tg.create_task(lane())
        rate = jobs / (time.perf_counter() - t0)
        await check_waiting(side, jobs + 1)
        return rate
    finally:
        await side.close()


# -- memory ------------------------------------------------------------------------------------


async def memory(ctx: Context, system: System, *, jobs: int) -> Outcome:
    """Redis ``used_memory`` grown per queued job, no worker running."""
    await system.enqueue_batch("noop", [-1])  # the queue's keys exist, the scripts are loaded
    async with Redis.from_url(ctx.url) as r:
        before = await used_memory(r)
        await system.enqueue_batch("noop", list(range(jobs)))
        after = await used_memory(r)
    await check_waiting(system, jobs + 1)
    return Outcome({"memory_bytes_per_job": (after - before) / jobs}, {"used_memory_delta": after - before})
