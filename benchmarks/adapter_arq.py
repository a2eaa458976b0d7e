"""arq as a benchmarked system: ``create_pool`` + ``enqueue_job`` on the producer side, one
``arq.worker.Worker`` in the worker process, as in arq's documentation."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import Callable
from typing import Any, ClassVar

from arq import create_pool  # type: ignore[import-not-found, unused-ignore]
from arq.connections import ArqRedis, RedisSettings  # type: ignore[import-not-found, unused-ignore]
from arq.constants import result_key_prefix  # type: ignore[import-not-found, unused-ignore]
from arq.worker import Retry, Worker, func  # type: ignore[import-not-found, unused-ignore]

from .adapter import PROBE, SLEEP_SECONDS, System, TaskName, tally


async def noop(ctx: dict[str, Any], i: int) -> None:
    PROBE.start(i)
    PROBE.end()


async def sleep(ctx: dict[str, Any], i: int) -> None:
    PROBE.start(i)
    await asyncio.sleep(SLEEP_SECONDS)
    PROBE.end()


async def flaky(ctx: dict[str, Any], i: int) -> None:
    if PROBE.first_attempt(i):
        raise Retry(defer=0)  # arq retries on ``Retry`` only; any other exception fails the job
    PROBE.start(i)
    PROBE.end()


FUNCTIONS = [func(noop, name="noop"), func(sleep, name="sleep"), func(flaky, name="flaky")]


class Arq(System):
    name: ClassVar[str] = "arq"
    packages: ClassVar[tuple[str, ...]] = ("arq", "redis", "hiredis")
    knobs: ClassVar[str] = (
        "`Worker(max_jobs=N)` (default 10), `handle_signals=False` (the harness stops it); defaults "
        "kept: `poll_delay=0.5` s, `queue_read_limit=max(5 * max_jobs, 100)`, `keep_result=3600` s, "
        "pickle; `flaky` raises `arq.worker.Retry(defer=0)` (arq retries nothing else)"
    )

    def __init__(self) -> None:
        self._url = ""
        self._queue = ""
        self._pool: ArqRedis | None = None

    @property
    def pool(self) -> ArqRedis:
        assert self._pool is not None, "open() first"
        return self._pool

    async def open(self, url: str, queue: str) -> None:
        self._url, self._queue = url, queue
        self._pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def enqueue(self, task: TaskName, i: int) -> str:
        job = await self.pool.enqueue_job(task, i)
        return str(job.job_id) if job is not None else ""

    async def waiting(self) -> int:
        return int(await self.pool.zcard(self._queue))

    async def unfinished(self) -> int:
        # a job stays in the queue's sorted set until it ends (a retry only moves its score)
        return int(await self.pool.zcard(self._queue))

    async def outcomes(self) -> dict[str, int]:
        def classify(raw: bytes) -> str:
            d = pickle.loads(raw)  # arq's own result format, from our private Redis
            if d.get("q") != self._queue:
                return "other queues"
            return "succeeded" if d["s"] else f"failed: {d['r']!r}"[:120]

        return await tally(self._url, result_key_prefix + "*", classify)

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        async def startup(ctx: dict[str, Any]) -> None:
            ready()

        worker = Worker(
            FUNCTIONS,
            queue_name=self._queue,
            redis_settings=RedisSettings.from_dsn(self._url),
            max_jobs=concurrency,
            handle_signals=False,
            on_startup=startup,
        )
        running = asyncio.create_task(worker.async_run())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if running.done():
            running.result()  # the worker failed: raise its error
        # what arq does on a signal with `job_completion_wait` set: pick no more jobs, let the
        # running ones end, then close (which cancels the poll loop: handle_signals=False)
        worker.allow_pick_jobs = False
        for _ in range(200):  # up to 10 s
            if all(t.done() for t in worker.tasks.values()):
                break
            await asyncio.sleep(0.05)
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running
