"""A reference, not a job queue: the least work any Redis-backed queue can do under the
rules the benchmark holds aiotaskq to, to show what the machine itself allows.

Jobs are strings ``task:i`` in one Redis list. Enqueue is one ``RPUSH`` (the batch API: one
``RPUSH`` of many, with the count of jobs enqueued in the same round trip; a single enqueue
counts its job in the producer, written before the harness reads a count); the worker claims
only for its free slots, as aiotaskq's contract says (``LPOP`` of that many, one round trip),
blocks on ``BLPOP`` (a connection of its own) when the list is empty, and counts the jobs
that ended with one ``INCRBY`` per batch. A failed attempt is pushed back at once. There is
no job state, no crash safety, no fencing, no results, no priorities, no delays: a job
claimed by a worker that dies is lost.
Whatever a real queue measures above this floor is the price of what it keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar, cast

from redis.asyncio import Redis

from .adapter import FlakyError, System, TaskName, flaky, noop, sleep

FUNCTIONS: dict[bytes, Callable[[int], Awaitable[None]]] = {b"noop": noop, b"sleep": sleep, b"flaky": flaky}


class Floor(System):
    name: ClassVar[str] = "floor"
    packages: ClassVar[tuple[str, ...]] = ("redis", "hiredis")
    knobs: ClassVar[str] = (
        "a reference, not a job queue (see benchmarks/adapter_floor.py): one Redis list, `RPUSH` to "
        "enqueue, `LPOP` of as many jobs as there are free slots, `BLPOP` when idle, one `INCRBY` per "
        "batch of ended jobs; a failed attempt is pushed back at once"
    )
    batch_api: ClassVar[str] = "one `RPUSH` of many"

    def __init__(self) -> None:
        self._url = ""
        self._redis: Redis | None = None
        self._jobs = self._enqueued = self._done = ""
        self._uncounted = 0  # single enqueues not yet added to the enqueued count

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "open() first"
        return self._redis

    async def open(self, url: str, queue: str) -> None:
        self._url = url
        self._redis = Redis.from_url(url)
        prefix = f"floor:{{{queue}}}:"
        self._jobs, self._enqueued, self._done = prefix + "jobs", prefix + "enqueued", prefix + "done"

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def enqueue(self, task: TaskName, i: int) -> str:
        job = f"{task}:{i}"
        self._uncounted += 1  # written by the next count (unfinished), not by a command of its own
        await self.redis.rpush(self._jobs, job)
        return job

    async def enqueue_batch(self, task: TaskName, items: list[int]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self._jobs, *(f"{task}:{i}" for i in items))
        pipe.incrby(self._enqueued, len(items))
        await pipe.execute()

    async def waiting(self) -> int:
        return int(await self.redis.llen(self._jobs))

    async def unfinished(self) -> int:
        if self._uncounted:
            n, self._uncounted = self._uncounted, 0
            await self.redis.incrby(self._enqueued, n)
        enqueued, done = await self.redis.mget(self._enqueued, self._done)
        return int(enqueued or 0) - int(done or 0)

    async def outcomes(self) -> dict[str, int]:
        out = {"succeeded": int(await self.redis.get(self._done) or 0)}
        if waiting := await self.waiting():
            out["not ended (waiting)"] = waiting
        return out

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        blocking = Redis.from_url(self._url)  # BLPOP holds its connection
        w = _Worker(self.redis, blocking, self._jobs, self._done, concurrency)
        tasks = [asyncio.create_task(w.work()) for _ in range(concurrency)]
        tasks += [asyncio.create_task(w.write_ends()), asyncio.create_task(w.claim())]
        ready()
        try:
            await stop.wait()
        finally:
            # Cancel until every task is gone: on Python 3.11 a cancellation that lands as a
            # BLPOP's own timeout expires can be swallowed (redis-py's read timeout, then a retry).
            pending = set(tasks)
            while pending:
                for t in pending:
                    t.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.1)
            await blocking.aclose()


class _Worker:
    """The worker side: a claim loop, ``concurrency`` workers, and a writer of the counts."""

    def __init__(self, redis: Redis, blocking: Redis, jobs_key: str, done_key: str, concurrency: int) -> None:
        self.redis, self.blocking, self.jobs_key, self.done_key = redis, blocking, jobs_key, done_key
        self.free = concurrency
        self.freed = asyncio.Event()
        self.dispatch: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended = 0
        self.again: list[bytes] = []
        self.to_write = asyncio.Event()

    async def work(self) -> None:
        while True:
            item = await self.dispatch.get()
            task, _, i = item.partition(b":")
            try:
                await FUNCTIONS[task](int(i))
                self.ended += 1
            except FlakyError:
                self.again.append(item)
            self.free += 1
            self.freed.set()
            self.to_write.set()

    async def write_ends(self) -> None:
        while True:
            await self.to_write.wait()
            self.to_write.clear()
            n, self.ended = self.ended, 0
            retry, self.again = self.again, []
            pipe = self.redis.pipeline(transaction=False)
            if retry:
                pipe.rpush(self.jobs_key, *retry)
            if n:
                pipe.incrby(self.done_key, n)
            await pipe.execute()

    async def claim(self) -> None:
        while True:
            while self.free <= 0:
                self.freed.clear()
                await self.freed.wait()
            want = self.free
            self.free -= want
            got = cast(list[bytes], await self.redis.lpop(self.jobs_key, want) or [])
            self.free += want - len(got)
            for item in got:
                self.dispatch.put_nowait(item)
            if not got:
                popped = await self.blocking.blpop([self.jobs_key], timeout=1)
                if popped is not None:
                    self.free -= 1
                    self.dispatch.put_nowait(cast(bytes, popped[1]))
