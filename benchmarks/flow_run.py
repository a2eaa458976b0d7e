"""One run of ``benchmarks/flow.py``, in a subprocess of its own so that the aiotaskq it
imports is the one on ``$PYTHONPATH`` (the code under test, or an older commit's): enqueue
``jobs`` jobs of one workload, drain them with one in-process pool, and print JSON with the
enqueue and drain times and redis-server's CPU seconds (``INFO``) around each phase. Only
public API that predates the flow-control features is used for the plain workload."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import anyio
from redis.asyncio import Redis

from aiotaskq import JobStatus, Pool, Queue


async def _cpu(r: Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _enqueue(q: Queue, workload: str, jobs: int, noop: Any, total: Any) -> None:
    if workload == "groups":  # groups of 100 members and a callback: jobs counts the members
        for _ in range(jobs // 100):
            await q.group([noop.call(i) for i in range(100)], then=total.call())
    elif workload == "keyed":  # 200 keys, spread evenly
        for start in range(0, jobs, 1000):
            for k in range(200):
                n = len(range(start + k, min(start + 1000, jobs), 200))
                if n:
                    await noop.options(key=f"k{k}").enqueue_many([(i,) for i in range(n)])
    else:
        for start in range(0, jobs, 1000):
            await noop.enqueue_many([()] * min(1000, jobs - start))


async def main(url: str, workload: str, jobs: int, concurrency: int) -> dict[str, Any]:
    q = Queue(f"flow-{workload}-{uuid.uuid4().hex[:8]}", url=url)
    declare: dict[str, Any] = {}
    if workload == "limited":
        declare["rate_limit"] = "10000/s"
    if workload == "keyed":
        declare["key_concurrency"] = 5

    @q.task(name="noop", **declare)
    async def noop(n: int = 0) -> int:
        return n

    @q.task(name="total")
    async def total(results: list[int]) -> int:
        return sum(results)

    r = Redis.from_url(url)
    c0 = await _cpu(r)
    t0 = time.perf_counter()
    await _enqueue(q, workload, jobs, noop, total)
    t1 = time.perf_counter()
    c1 = await _cpu(r)
    pool = Pool(q, concurrency=concurrency, poll_interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        while True:
            c = await q.counts()
            if not (c[JobStatus.QUEUED] or c[JobStatus.ACTIVE] or c[JobStatus.SCHEDULED]):
                break
            await anyio.sleep(0.02)
        t2 = time.perf_counter()
        pool.stop()
    c2 = await _cpu(r)
    ended = sum(c[s] for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED))
    await r.aclose()
    await q.close()
    return {"enqueue_s": t1 - t0, "drain_s": t2 - t1, "enqueue_cpu": c1 - c0, "drain_cpu": c2 - c1, "ended": ended}


if __name__ == "__main__":
    url, workload, jobs, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(main(url, workload, jobs, concurrency))))
