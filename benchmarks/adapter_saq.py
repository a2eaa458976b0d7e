"""SAQ as a benchmarked system: ``Queue.from_url`` + ``queue.enqueue`` on the producer side, one
``saq.Worker`` in the worker process, as in SAQ's documentation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

from saq import Queue, Worker  # type: ignore[import-not-found, unused-ignore]

from .adapter import PROBE, SLEEP_SECONDS, FlakyError, System, TaskName, tally


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    PROBE.start(i)
    PROBE.end()


async def sleep(ctx: dict[str, Any], *, i: int) -> None:
    PROBE.start(i)
    await asyncio.sleep(SLEEP_SECONDS)
    PROBE.end()


async def flaky(ctx: dict[str, Any], *, i: int) -> None:
    if PROBE.first_attempt(i):
        raise FlakyError(i)
    PROBE.start(i)
    PROBE.end()


FUNCTIONS: list[Any] = [("noop", noop), ("sleep", sleep), ("flaky", flaky)]


class Saq(System):
    name: ClassVar[str] = "saq"
    packages: ClassVar[tuple[str, ...]] = ("saq", "redis", "hiredis")
    knobs: ClassVar[str] = (
        "`Worker(concurrency=N)` (default 10); defaults kept: `dequeue_timeout=0` (a blocking `BLMOVE` per "
        "slot), timers (schedule 1 s, abort 1 s, sweep 60 s), job `timeout=10` s, `ttl=600` s, JSON; "
        "`flaky` jobs are enqueued with `retries=2` (SAQ counts attempts: its default `retries=1` allows "
        "none) and `retry_delay=0` (the default)"
    )

    def __init__(self) -> None:
        self._url = ""
        self._queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        assert self._queue is not None, "open() first"
        return self._queue

    async def open(self, url: str, queue: str) -> None:
        self._url = url
        self._queue = Queue.from_url(url, name=queue)
        await self._queue.connect()

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()

    async def enqueue(self, task: TaskName, i: int) -> str:
        if task == "flaky":
            job = await self.queue.enqueue(task, i=i, retries=2)
        else:
            job = await self.queue.enqueue(task, i=i)
        return str(job.id) if job is not None else ""

    async def waiting(self) -> int:
        return int(await self.queue.count("queued"))

    async def unfinished(self) -> int:
        # the "incomplete" sorted set holds a job from enqueue until it ends, retries included
        return int(await self.queue.count("incomplete"))

    async def outcomes(self) -> dict[str, int]:
        def classify(raw: bytes) -> str:
            d = json.loads(raw)
            status = str(d.get("status"))
            error = str(d.get("error") or "").strip().splitlines()
            if status == "complete":
                return "succeeded"
            if status in ("failed", "aborted"):
                return f"{status}: {error[-1] if error else ''}"[:120]
            return f"not ended ({status}{': ' + error[-1] if error else ''})"[:120]

        return await tally(self._url, f"saq:job:{self.queue.name}:*", classify)

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        async def startup(ctx: Any) -> None:
            ready()

        worker = Worker(self.queue, FUNCTIONS, concurrency=concurrency, startup=startup)
        running = asyncio.create_task(worker.start())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if running.done():
            running.result()
            raise RuntimeError("the saq worker stopped before it was asked to")
        await worker.stop()
        await running
