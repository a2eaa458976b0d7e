"""``python -m benchmarks.shards``: Redis CPU per job on each master of a local 3-master Redis
Cluster, for one queue in 1, 2 and 3 shards (``Queue(name, shards=N)``).

Each repetition enqueues ``--jobs`` no-op jobs (in batches, as ``enqueue_many`` does), then
drains them with one in-process pool, and reads each master's CPU time (``INFO``: user +
system) before and after each phase. The capacity of one queue is bounded by its busiest
master: the figure that matters is the largest per-master CPU per job, which sharding divides.
Medians of ``--reps``; ``--write`` puts the table into docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio
from redis.asyncio import Redis

from aiotaskq import JobStatus, Pool, Queue
from aiotaskq.testing import LocalCluster

from .measure import ServerStats

DOC = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"
BEGIN, END = "<!-- shards:begin -->", "<!-- shards:end -->"


@dataclass(frozen=True)
class Run:
    rate: float  # jobs drained per second
    enqueue: list[float]  # microseconds of CPU per job on each master, enqueueing
    drain: list[float]  # and draining

    @property
    def per_master(self) -> list[float]:
        return [a + b for a, b in zip(self.enqueue, self.drain, strict=True)]


async def one_run(cluster: LocalCluster, shards: int, jobs: int, concurrency: int) -> Run:
    q = Queue(f"shards-{shards}-{uuid.uuid4().hex[:8]}", url=cluster.url, shards=shards, keep_result=0)

    @q.task(name="noop")
    async def noop() -> None:
        return None

    masters = [Redis.from_url(n.url) for n in cluster.nodes if n.port in _master_ports(cluster)]
    try:
        before = [await ServerStats.take(m) for m in masters]
        for start in range(0, jobs, 1000):
            await noop.enqueue_many([()] * min(1000, jobs - start))
        queued = [await ServerStats.take(m) for m in masters]
        t0 = time.perf_counter()
        pool = Pool(q, concurrency=concurrency, poll_interval=0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            while True:  # drained: nothing scheduled, queued or active
                c = await q.counts()
                if not (c[JobStatus.QUEUED] or c[JobStatus.ACTIVE] or c[JobStatus.SCHEDULED]):
                    break
                await anyio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            pool.stop()
        drained = [await ServerStats.take(m) for m in masters]
    finally:
        for m in masters:
            await m.aclose()
        await q.close()
    enqueue_us = [(b.cpu - a.cpu) / jobs * 1e6 for a, b in zip(before, queued, strict=True)]
    drain_us = [(b.cpu - a.cpu) / jobs * 1e6 for a, b in zip(queued, drained, strict=True)]
    return Run(jobs / elapsed, enqueue_us, drain_us)


def _master_ports(cluster: LocalCluster) -> list[int]:
    return sorted({cluster.master_port_for_slot(s) for s in (0, 8000, 16383)})


def _median_list(rows: list[list[float]]) -> list[float]:
    return [statistics.median(col) for col in zip(*rows, strict=True)]


def table(results: dict[int, list[Run]], jobs: int, reps: int) -> str:
    lines = [
        f"Medians of {reps} runs of {jobs:,} no-op jobs, one in-process pool (concurrency 100), "
        "a local 3-master Redis Cluster (no replicas) on one machine. CPU in microseconds of "
        "redis-server per job: enqueue + drain (claim, settle), on each master.",
        "",
        "| shards | busiest master | second | third | all masters | drain (jobs/s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for shards, runs in results.items():
        # Each run's masters, busiest first (which master holds a shard differs between runs).
        ranked = [sorted(r.per_master, reverse=True) for r in runs]
        per = _median_list(ranked)
        total = statistics.median(sum(r) for r in ranked)
        rate = statistics.median(r.rate for r in runs)
        cells = " | ".join(f"{x:.1f}" for x in per)
        lines.append(f"| {shards} | {cells} | {total:.1f} | {rate:,.0f} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> str:
    results: dict[int, list[Run]] = {s: [] for s in args.shards}
    with LocalCluster(masters=3, replicas=0) as cluster:
        for rep in range(args.reps):
            for shards in args.shards:  # alternate within a repetition
                r = await one_run(cluster, shards, args.jobs, args.concurrency)
                results[shards].append(r)
                print(f"rep {rep + 1} shards {shards}: {r.rate:,.0f} jobs/s, per master "
                      f"{[round(x, 1) for x in r.per_master]} us/job", file=sys.stderr)  # fmt: skip
    return table(results, args.jobs, args.reps)


def write(text: str) -> None:
    doc = DOC.read_text()
    new = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", f"{BEGIN}\n{text}\n{END}", doc, flags=re.DOTALL)
    if new == doc and BEGIN not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
    DOC.write_text(new)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--write", action="store_true", help="put the table into docs/scaling.md")
    ns = parser.parse_args()
    out = asyncio.run(main(ns))
    print(out)
    if ns.write:
        write(out)
