"""aiotaskq as a benchmarked system: a ``Queue`` with three tasks and one ``Pool``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, ClassVar

import anyio

from aiotaskq import JobStatus, Pool, Queue, Task

from .adapter import PROBE, SLEEP_SECONDS, FlakyError, System, TaskName


class Aiotaskq(System):
    name: ClassVar[str] = "aiotaskq"
    packages: ClassVar[tuple[str, ...]] = ("aiotaskq", "redis", "hiredis", "msgspec", "anyio")
    knobs: ClassVar[str] = (
        "`Pool(queue, concurrency=N)`, every other option at its default; "
        "`flaky` has `retries=1, backoff=(0, 0)` (a plain exception, retried at once)"
    )
    batch_api: ClassVar[str] = "`Task.enqueue_many`"

    def __init__(self) -> None:
        self._queue: Queue | None = None
        self._tasks: dict[TaskName, Task[Any, Any]] = {}

    @property
    def queue(self) -> Queue:
        assert self._queue is not None, "open() first"
        return self._queue

    async def open(self, url: str, queue: str) -> None:
        q = self._queue = Queue(queue, url=url)

        @q.task(name="bench.noop")
        async def noop(i: int) -> None:
            PROBE.start(i)
            PROBE.end()

        @q.task(name="bench.sleep")
        async def sleep(i: int) -> None:
            PROBE.start(i)
            await asyncio.sleep(SLEEP_SECONDS)
            PROBE.end()

        @q.task(name="bench.flaky", retries=1, backoff=(0.0, 0.0))
        async def flaky(i: int) -> None:
            if PROBE.first_attempt(i):
                raise FlakyError(i)
            PROBE.start(i)
            PROBE.end()

        self._tasks = {"noop": noop, "sleep": sleep, "flaky": flaky}

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()

    async def enqueue(self, task: TaskName, i: int) -> str:
        job = await self._tasks[task].enqueue(i)
        return job.id if job is not None else ""

    async def enqueue_batch(self, task: TaskName, items: list[int]) -> None:
        await self._tasks[task].enqueue_many([(i,) for i in items])

    async def waiting(self) -> int:
        counts = await self.queue.counts()
        return counts[JobStatus.QUEUED] + counts[JobStatus.SCHEDULED]

    async def unfinished(self) -> int:
        counts = await self.queue.counts()
        return counts[JobStatus.QUEUED] + counts[JobStatus.SCHEDULED] + counts[JobStatus.ACTIVE]

    async def outcomes(self) -> dict[str, int]:
        ended = {JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}
        counts = await self.queue.counts()
        return {ended.get(k, f"not ended ({k.value})"): v for k, v in counts.items() if v}

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        pool = Pool(self.queue, concurrency=concurrency, on_startup=lambda _pool: ready())
        if os.environ.get("AIOTASKQ_BENCH_METRICS") == "1":  # the cost of aiotaskq.metrics (docs/metrics.md)
            from prometheus_client import CollectorRegistry

            from aiotaskq.metrics import Metrics

            Metrics(CollectorRegistry()).instrument(pool)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            await stop.wait()
            pool.stop()
