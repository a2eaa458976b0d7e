"""``python -m benchmarks.processes``: the drain of CPU-bound jobs with ``aiotaskq worker
--processes 1`` and ``--processes 2`` (issue 15, item 6).

Each run enqueues ``--jobs`` jobs of ``benchmarks/cpu_app.py``'s ``crunch`` (pure Python, holding
the GIL) on a paused queue, starts the worker with N processes, waits until N pools registered,
resumes the queue and times the drain until every job succeeded. Medians of ``--reps`` on one
private redis-server; the processes alternate within a repetition."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiotaskq import JobStatus, Queue
from aiotaskq.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent


async def one_run(url: str, processes: int, jobs: int, work: int) -> float:
    name = f"cpu-{uuid.uuid4().hex[:8]}"
    q = Queue(name, url=url)
    await q.pause()
    for _ in range(jobs):
        await q.enqueue("crunch", args=(work,))
    env = {**os.environ, "AIOTASKQ_REDIS_URL": url, "CPU_APP_QUEUE": name, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(  # noqa: ASYNC220 - one worker per run, started before the clock
        [sys.executable, "-m", "aiotaskq", "worker", "benchmarks.cpu_app:queue", "--processes", str(processes),
         "--concurrency", "4", "--log-level", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        while True:  # every process's pool registered
            if await q.redis.zcard(q.keys.pools) >= processes:
                break
            await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        await q.resume()
        while True:
            if (await q.counts())[JobStatus.SUCCEEDED] >= jobs:
                break
            await asyncio.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        await q.purge(JobStatus.SUCCEEDED)
        await q.close()


async def main(args: argparse.Namespace) -> str:
    results: dict[int, list[float]] = {1: [], 2: []}
    with RedisServer() as server:
        for rep in range(args.reps):
            for n in (1, 2) if rep % 2 == 0 else (2, 1):
                took = await one_run(server.url, n, args.jobs, args.work)
                results[n].append(took)
                print(f"rep {rep + 1}, {n} process(es): {args.jobs / took:,.0f} jobs/s", file=sys.stderr)
    one, two = (statistics.median(args.jobs / t for t in results[n]) for n in (1, 2))
    return (
        f"CPU-bound drain ({args.jobs} jobs of ~{args.work:,} loop steps each, concurrency 4 per process; "
        f"medians of {args.reps}): 1 process {one:,.0f} jobs/s, 2 processes {two:,.0f} jobs/s ({two / one:.2f}x) "
        f"on {os.cpu_count()} cores."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--work", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    print(asyncio.run(main(parser.parse_args())))
