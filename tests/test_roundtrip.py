from __future__ import annotations

import anyio

from aiotaskq import JobStatus, Pool, Queue


async def test_enqueue_claim_finish(queue: Queue) -> None:
    @queue.task
    async def add(x: int, y: int) -> int:
        return x + y

    job = await add.enqueue(1, 2)
    assert await job.status() is JobStatus.QUEUED
    pool = Pool(queue, concurrency=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        assert await job.result(timeout=5) == 3
        pool.stop()
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 1
    assert info.result == 3
    assert info.args == (1, 2)
