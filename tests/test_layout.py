"""A queue written by an earlier aiotaskq (each job a hash of its own) is refused, not skipped."""

from __future__ import annotations

import anyio
import pytest

from aiotaskq import Pool, Queue, StorageLayoutError


async def test_a_pool_refuses_a_queue_holding_jobs_of_the_old_layout_and_takes_nothing(queue: Queue) -> None:
    k = queue.keys
    # what the layout before the jobs hash left: a job hash and its id in band 0
    await queue.redis.hset(k.job("old"), mapping={"task": "t", "payload": b"\x92\x90\x80", "status": "queued"})
    await queue.redis.rpush(k.band(0), "old")
    await queue.redis.zadd(k.queued, {"0": 0})
    fresh = await queue.enqueue("t")  # a job of this layout, waiting behind it
    assert fresh is not None

    pool = Pool(queue, concurrency=2, poll_interval=0.05)
    with anyio.fail_after(10), pytest.raises(StorageLayoutError, match="'old' is a hash of its own"):
        await pool.run()
    # nothing was claimed: both ids still wait in their band, the old job's hash untouched
    assert await queue.redis.lrange(k.band(0), 0, -1) == [b"old", fresh.id.encode()]
    assert await queue.redis.hget(k.job("old"), "status") == b"queued"
    assert await queue.redis.hlen(k.active) == 0


async def test_a_pool_serves_a_queue_of_this_layout(queue: Queue) -> None:
    """The check looks at real jobs of every structure and finds nothing to refuse."""

    @queue.task(name="ok")
    async def ok() -> int:
        return 1

    done = await ok.enqueue()
    failed = await queue.enqueue("nobody-has-this")
    later = await ok.options(delay=60).enqueue()
    assert failed is not None and later is not None
    assert await queue.scripts.layout_check() == ""
    pool = Pool(queue, concurrency=2, poll_interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with anyio.fail_after(10):
            assert await done.result() == 1
        assert await queue.scripts.layout_check() == ""  # ended and scheduled jobs, records all
        tg.cancel_scope.cancel()
