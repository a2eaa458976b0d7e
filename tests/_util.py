"""Shared helpers for the in-process tests: run a pool for a block, wait on conditions."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import anyio

from aiotaskq import Job, JobStatus, Pool, Queue
from aiotaskq.testing import job_fields

# Small intervals keep every test bounded in time.
FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.2,
    "stale_timeout": 1.0,
    "shutdown_timeout": 2.0,
}


def must(job: Job | None) -> Job:
    """The job an enqueue with options returned (None only when deduplicated by job_id)."""
    assert job is not None, "the enqueue was deduplicated"
    return job


@contextlib.asynccontextmanager
async def run_pool(queues: Queue | Sequence[Queue], *, idle: bool = False, **options: Any) -> AsyncIterator[Pool]:
    """Run a Pool in a task group for the block; stop it (gracefully) on exit.

    With ``idle=True`` the block starts once the pool has registered, subscribed
    and parked itself in the ``idle`` set of every queue (waiting for a wake-up).
    """
    pool = Pool(queues, **{**FAST, **options})
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        try:
            if idle:
                await wait_idle(pool)
            yield pool
        finally:
            pool.stop()


async def wait_idle(pool: Pool, timeout: float = 5.0) -> None:
    """Wait until the pool sits in the ``idle`` set of each of its queues."""

    async def parked() -> bool:
        for runner in pool.runners:
            q = runner.queue
            if await q.redis.zscore(q.keys.idle, runner.pool_id) is None:
                return False
        return True

    await wait_for(parked, timeout, "the pool to go idle")


async def wait_for(cond: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``cond`` (sync or async) every 10 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        out = cond()
        if inspect.isawaitable(out):
            out = await out
        if out:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


async def wait_scored(queue: Queue, zset: str, member: str, times: int, timeout: float = 5.0) -> None:
    """Wait until ``member``'s score in ``zset`` has changed ``times`` times: a pool's heartbeats
    (``pools``) or presence ticks (``alive``) happened, rather than sleeping and hoping they did."""
    seen: list[float | None] = [await queue.redis.zscore(zset, member)]

    async def changed() -> bool:
        score = await queue.redis.zscore(zset, member)
        if score != seen[-1]:
            seen.append(score)
        return len(seen) > times

    await wait_for(changed, timeout, f"{times} new score(s) of {member} in {zset}")


async def wait_status(queue: Queue, job_id: str, status: JobStatus, timeout: float = 5.0) -> None:
    """Wait until the job has ``status``."""

    async def reached() -> bool:
        (fields,) = await job_fields(queue, [job_id])
        return fields is not None and fields["status"] == status.value.encode()

    await wait_for(reached, timeout, f"job {job_id} to be {status.value}")


async def queue_keys(queue: Queue) -> list[bytes]:
    """Every Redis key of the queue (its ``aiotaskq:{Q}:`` prefix)."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in queue.keys.prefix) + "*"
    return sorted([k async for k in queue.redis.scan_iter(match=pattern)])


async def queued_ids(q: Queue) -> list[bytes]:
    """The ids waiting in ``queued``, in the order a claim takes them (highest band first)."""
    out: list[bytes] = []
    bands: list[bytes] = await q.redis.zrange(q.keys.queued, 0, -1)  # type: ignore[assignment]
    for band in bands:
        out += cast(list[bytes], await q.redis.lrange(q.keys.band(band.decode()), 0, -1))
    return out


async def shard_subscribers(redis: Any, channel: str) -> int:
    """Subscribers of a shard channel on this node (``PUBSUB SHARDNUMSUB``; Redis 7 and later)."""
    reply = await redis.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def spublish(redis: Any, channel: str, message: bytes) -> None:
    """Publish on a shard channel, where the listener subscribes from Redis 7 on."""
    await redis.execute_command("SPUBLISH", channel, message)
