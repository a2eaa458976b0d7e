"""The tasks the fault runs' worker subprocesses serve.

A worker is ``python -m aiotaskq worker benchmarks.faults.app:queue --url URL ...``; the
environment names the rest:

- ``FAULTS_QUEUE``: the queue's name;
- ``FAULTS_RECORD_URL``: where tasks record their runs, always straight to Redis, so that a
  run is recorded even while the pool's own connection (``--url``) goes through a cut proxy;
- ``FAULTS_KEEP_RESULT``: seconds results are kept (default one day).

The harness builds a queue of the same name with :func:`register` to enqueue by task.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Coroutine
from typing import Any, NamedTuple

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aiotaskq import Queue, Task

RUNS = "faults:runs"  # hash, under the queue's key prefix: "<n>:<run token>" -> "<pid> <local ms> <redis ms>"
LOAD_RUNS = "faults:load-runs"  # string: runs of fault.noop

# One round trip, idempotent when redis-py re-sends it: the field is unique to this run.
_RECORD = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return 1
"""


class Tasks(NamedTuple):
    work: Task[[int, int], Coroutine[Any, Any, None]]
    noop: Task[[int], Coroutine[Any, Any, None]]
    stall_first: Task[[int, int], Coroutine[Any, Any, None]]
    block_first: Task[[int, int], Coroutine[Any, Any, None]]


class _Recorder:
    """A client of its own, straight to Redis; retries while Redis is away (a restart)."""

    def __init__(self) -> None:
        self._redis: Redis | None = None

    def client(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(os.environ["FAULTS_RECORD_URL"])
        return self._redis

    async def run(self, key: str, n: int) -> None:
        field, value = f"{n}:{uuid.uuid4().hex[:12]}", f"{os.getpid()} {round(time.time() * 1000)}"
        deadline = time.monotonic() + 120
        while True:
            try:
                await self.client().eval(_RECORD, 1, key, field, value)
                return
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.05)

    async def incr(self, key: str) -> None:
        await self.client().incr(key)

    async def first(self, key: str) -> bool:
        """True the first time ``key`` is counted."""
        return int(await self.client().incr(key)) == 1


def register(q: Queue) -> Tasks:
    """Register the fault tasks on ``q`` (the workers' queue, or the harness's copy of it)."""
    recorder = _Recorder()
    runs_key, load_key = q.keys.prefix + RUNS, q.keys.prefix + LOAD_RUNS

    @q.task(name="fault.work")
    async def work(n: int, ms: int) -> None:
        """Record this run (Redis time, pid), then sleep ``ms`` milliseconds."""
        await recorder.run(runs_key, n)
        await anyio.sleep(ms / 1000)

    @q.task(name="fault.noop")
    async def noop(n: int) -> None:
        """Count the run; nothing else (the load run)."""
        await recorder.incr(load_key)

    @q.task(name="fault.stall_first")
    async def stall_first(n: int, ms: int) -> None:
        """Record this run; the first run of job ``n`` then sleeps ``ms`` (cancellably), later runs return.
        The first run is marked before the run is recorded: a worker killed as soon as its run shows
        has always marked it, so the rerun does not take itself for the first and sleep too."""
        first = await recorder.first(q.keys.prefix + f"faults:first:{n}")
        await recorder.run(runs_key, n)
        if first:
            await anyio.sleep(ms / 1000)

    @q.task(name="fault.block_first")
    async def block_first(n: int, ms: int) -> None:
        """Record this run; the first run of job ``n`` then blocks the whole event loop for ``ms``."""
        first = await recorder.first(q.keys.prefix + f"faults:first:{n}")  # marked first, as above
        await recorder.run(runs_key, n)
        if first:
            time.sleep(ms / 1000)  # noqa: ASYNC251 - a loop blocked this long is the fault under test

    return Tasks(work, noop, stall_first, block_first)


queue = Queue(os.environ.get("FAULTS_QUEUE", "faults"), keep_result=float(os.environ.get("FAULTS_KEEP_RESULT", 86400)))
tasks = register(queue)
