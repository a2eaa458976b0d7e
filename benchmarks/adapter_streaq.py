"""streaq as a benchmarked system: a ``streaq.Worker`` with three tasks; the producer enqueues
through it (``await task.enqueue(...)``, ``worker.enqueue_many``), the worker process runs it
(``run_async``), as in streaq's documentation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any, ClassVar

import anyio
from streaq import StreaqRetry, Worker  # type: ignore[import-not-found, unused-ignore]
from streaq.constants import REDIS_PREFIX, REDIS_RESULT  # type: ignore[import-not-found, unused-ignore]

from .adapter import PROBE, System, TaskName, noop, sleep, tally


def make_worker(url: str, queue: str, concurrency: int = 16) -> tuple[Worker[Any], dict[TaskName, Any]]:
    """A streaq worker on ``queue`` with the three benchmark tasks registered."""
    worker: Worker[Any] = Worker(redis_url=url, queue_name=queue, concurrency=concurrency)

    async def flaky(i: int) -> None:
        if PROBE.first_attempt(i):
            # streaq retries on StreaqRetry only (any other exception fails the task);
            # delay=0 is the shortest: the retry goes through the delayed queue
            raise StreaqRetry("flaky", delay=0)
        PROBE.start(i)
        PROBE.end()

    # worker.task(name=...) as a decorator, written as a call (mypy sees no types without the bench extra)
    tasks: dict[TaskName, Any] = {
        "noop": worker.task(name="noop")(noop),
        "sleep": worker.task(name="sleep")(sleep),
        "flaky": worker.task(name="flaky")(flaky),
    }
    return worker, tasks


class Streaq(System):
    name: ClassVar[str] = "streaq"
    packages: ClassVar[tuple[str, ...]] = ("streaq", "coredis", "anyio")
    knobs: ClassVar[str] = (
        "`Worker(concurrency=N)` (default 16); defaults kept: `prefetch=concurrency`, `idle_timeout=60` s, "
        "result `ttl=5` min, pickle, delayed tasks moved every 0.5 s; `flaky` raises "
        "`StreaqRetry(delay=0)` (streaq retries nothing else)"
    )
    batch_api: ClassVar[str] = "`Worker.enqueue_many`"

    def __init__(self) -> None:
        self._url = ""
        self._queue = ""
        self._stack = contextlib.AsyncExitStack()
        self._worker: Worker[Any] | None = None
        self._tasks: dict[TaskName, Any] = {}

    @property
    def worker(self) -> Worker[Any]:
        assert self._worker is not None, "open() first"
        return self._worker

    async def open(self, url: str, queue: str) -> None:
        self._url, self._queue = url, queue
        self._worker, self._tasks = make_worker(url, queue)
        await self._stack.enter_async_context(self._worker)

    async def close(self) -> None:
        await self._stack.aclose()

    async def enqueue(self, task: TaskName, i: int) -> str:
        job = await self._tasks[task].enqueue(i)
        return str(job.id)

    async def enqueue_batch(self, task: TaskName, items: list[int]) -> None:
        fn = self._tasks[task]
        await self.worker.enqueue_many([fn.enqueue(i) for i in items])

    async def waiting(self) -> int:
        return int(await self.worker.queue_size())

    async def unfinished(self) -> int:
        # a task stays in the stream until it ends or waits in the delayed queue for a retry
        return int(await self.worker.queue_size())

    async def outcomes(self) -> dict[str, int]:
        def classify(raw: bytes) -> str:
            d = pickle.loads(raw)  # streaq's own result format, from our private Redis
            return "succeeded" if d["s"] else f"failed: {d['r']!r}"[:120]

        return await tally(self._url, f"{REDIS_PREFIX}{self._queue}{REDIS_RESULT}*", classify)

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        worker, _ = make_worker(self._url, self._queue, concurrency)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run_async)
            ready()
            await stop.wait()
            # streaq's own graceful shutdown is its SIGTERM handler (cancelling its task group from
            # outside instead can leave it hanging)
            os.kill(os.getpid(), signal.SIGTERM)
