"""Tasks for the fault tests, run by worker subprocesses (``python -m aiotaskq worker
tests.apps.faultapp:queue``). The queue's name comes from ``$FAULTAPP_QUEUE`` and its
Redis from ``$AIOTASKQ_REDIS_URL``; tests enqueue by task name and read Redis.

Each task counts its runs in a Redis key (``marker``), so a test can see that an
attempt started, and the first run can behave differently from a rerun.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import anyio
import redis

from aiotaskq import Queue

queue = Queue(os.environ.get("FAULTAPP_QUEUE", "faultapp"), shards=int(os.environ.get("FAULTAPP_SHARDS", "1")))
not_a_queue = 42


def _run(n: int) -> dict[str, Any]:
    return {"run": n, "pid": os.getpid()}


def _sync_client() -> redis.Redis | redis.RedisCluster:
    """A blocking client on the worker's Redis (its cluster, under `make test-cluster`)."""
    url = os.environ["AIOTASKQ_REDIS_URL"]
    if url.startswith("redis+cluster://"):
        host, port = url.removeprefix("redis+cluster://").split(",")[0].rsplit(":", 1)
        return redis.RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)


async def _count(marker: str) -> int:
    return int(await queue.redis.incr(marker))


@queue.task(name="fault.add")
async def add(x: int, y: int) -> int:
    return x + y


@queue.task(name="fault.loop")
async def loop() -> str:
    """The module of the event loop the worker runs on ('uvloop' or 'asyncio.unix_events')."""
    return type(asyncio.get_running_loop()).__module__


@queue.task(name="fault.stall_first")
async def stall_first(marker: str, seconds: float) -> dict[str, Any]:
    """The first run sleeps ``seconds`` (cancellably); later runs return at once."""
    n = await _count(marker)
    if n == 1:
        await anyio.sleep(seconds)
    return _run(n)


@queue.task(name="fault.suicide")
async def suicide(marker: str) -> None:
    """Kills its own worker process, every time: a poison job."""
    await _count(marker)
    os.kill(os.getpid(), signal.SIGKILL)


@queue.task(name="fault.block_first")
async def block_first(marker: str, release: str) -> dict[str, Any]:
    """The first run blocks the whole event loop (no heartbeats, nothing) until the
    key ``release`` exists, as a process cut off or frozen would; later runs return."""
    n = await _count(marker)
    if n == 1:
        sync = _sync_client()
        try:
            deadline = time.monotonic() + 60
            while not sync.exists(release) and time.monotonic() < deadline:
                time.sleep(0.02)  # noqa: ASYNC251 - blocking the loop is the point
        finally:
            sync.close()
    return _run(n)


@queue.task(name="fault.keyed", key_concurrency=1, retries=2)
async def keyed(log: str, n: int, hold: float) -> int:
    """One at a time per key: appends ``start:<n>`` to the list ``log``; on its first run
    sleeps ``hold`` seconds (cancellably); appends ``end:<n>``."""
    first = f"start:{n}".encode() not in await queue.redis.lrange(log, 0, -1)
    await queue.redis.rpush(log, f"start:{n}")
    if first:
        await anyio.sleep(hold)
    await queue.redis.rpush(log, f"end:{n}")
    return n


@queue.task(name="fault.collect", retries=2)
async def collect(results: list[int], log: str, hold: float = 0.0) -> int:
    """A group's callback: appends ``collect:<results>`` to the list ``log``; on its first run
    then sleeps ``hold`` seconds (cancellably); appends ``collected``; returns their sum."""
    earlier: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment,unused-ignore]
    first = not any(x.startswith(b"collect:") for x in earlier)
    await queue.redis.rpush(log, f"collect:{results}")
    if first:
        await anyio.sleep(hold)
    await queue.redis.rpush(log, "collected")
    return sum(results)
