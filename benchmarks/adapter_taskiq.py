"""taskiq as a benchmarked system: taskiq-redis's ``RedisStreamBroker`` (the broker its README
recommends, with acknowledgements) and ``RedisAsyncResultBackend``; ``task.kiq(...)`` on the
producer side; in the worker process, the ``Receiver`` that ``taskiq worker`` runs, built with
that command's defaults."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from redis.asyncio import Redis
from taskiq import AsyncBroker, SimpleRetryMiddleware, TaskiqEvents, TaskiqState  # type: ignore[import-not-found, unused-ignore]
from taskiq.receiver import Receiver  # type: ignore[import-not-found, unused-ignore]
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker  # type: ignore[import-not-found, unused-ignore]

from .adapter import System, TaskName, flaky, noop, sleep, tally

GROUP = "taskiq"  # RedisStreamBroker's default consumer group
RESULT_TTL = 3600  # seconds; taskiq-redis's README "highly recommends" an expiry


def make_broker(url: str, queue: str) -> tuple[AsyncBroker, dict[TaskName, Any]]:
    """A stream broker on ``queue`` with a result backend, retries, and the three tasks."""
    broker = (
        RedisStreamBroker(url=url, queue_name=queue)
        .with_result_backend(RedisAsyncResultBackend(redis_url=url, result_ex_time=RESULT_TTL, prefix_str=queue))
        .with_middlewares(SimpleRetryMiddleware(default_retry_count=3))
    )

    # broker.task(...) as a decorator, written as a call (mypy sees no types without the bench extra)
    tasks: dict[TaskName, Any] = {
        "noop": broker.task(task_name="noop")(noop),
        "sleep": broker.task(task_name="sleep")(sleep),
        "flaky": broker.task(task_name="flaky", retry_on_error=True)(flaky),
    }
    return broker, tasks


class Taskiq(System):
    name: ClassVar[str] = "taskiq"
    packages: ClassVar[tuple[str, ...]] = ("taskiq", "taskiq-redis", "redis", "hiredis")
    knobs: ClassVar[str] = (
        "`RedisStreamBroker` + `RedisAsyncResultBackend(result_ex_time=3600, prefix_str=<queue>)`; the "
        "worker is `taskiq worker`'s `Receiver` with its defaults (`max_prefetch=0`, ack when saved, "
        "parameter validation on, a thread pool) and `max_async_tasks=N` (the command's default is 100); "
        "`SimpleRetryMiddleware(default_retry_count=3)` and `retry_on_error=True` on `flaky` (a plain "
        "exception, re-sent at once)"
    )

    def __init__(self) -> None:
        self._url = ""
        self._queue = ""
        self._broker: AsyncBroker | None = None
        self._tasks: dict[TaskName, Any] = {}
        self._redis: Redis | None = None  # the harness's own client, for the counts

    @property
    def broker(self) -> AsyncBroker:
        assert self._broker is not None, "open() first"
        return self._broker

    async def open(self, url: str, queue: str) -> None:
        self._url, self._queue = url, queue
        self._redis = Redis.from_url(url)
        self._broker, self._tasks = make_broker(url, queue)
        await self._broker.startup()  # creates the stream's consumer group before anything is sent

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
        if self._redis is not None:
            await self._redis.aclose()

    async def enqueue(self, task: TaskName, i: int) -> str:
        job = await self._tasks[task].kiq(i)
        return str(job.task_id)

    async def _group(self) -> dict[str, Any]:
        assert self._redis is not None, "open() first"
        groups: list[dict[str, Any]] = await self._redis.xinfo_groups(self._queue)
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == GROUP:
                return g
        raise RuntimeError(f"no consumer group {GROUP!r} on stream {self._queue!r}")

    async def waiting(self) -> int:
        return int((await self._group())["lag"] or 0)

    async def unfinished(self) -> int:
        # not yet delivered (lag) + delivered and not yet acknowledged; the receiver acks a
        # message once its result is saved, and a retry is sent before the failed one is acked
        g = await self._group()
        return int(g["lag"] or 0) + int(g["pending"])

    async def outcomes(self) -> dict[str, int]:
        def classify(raw: bytes) -> str:
            d = pickle.loads(raw)  # taskiq's own result format, from our private Redis
            return f"failed: {d.get('error')!r}"[:120] if d["is_err"] else "succeeded"

        return await tally(self._url, f"{self._queue}:*", classify)

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        broker, _ = make_broker(self._url, self._queue)
        broker.is_worker_process = True

        async def startup(state: TaskiqState) -> None:
            ready()

        broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, startup)
        with ThreadPoolExecutor() as pool:
            receiver = Receiver(broker, executor=pool, max_async_tasks=concurrency)
            try:
                await receiver.listen(stop)
            finally:
                await broker.shutdown()
