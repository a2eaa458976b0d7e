from __future__ import annotations

import anyio
import pytest

from aiotaskq import JobFailed, Pool, Queue


async def test_non_numeric_job_fields_do_not_stop_the_pool(queue: Queue) -> None:
    """A job hash edited by hand (non-numeric retries/timeout) ends with an outcome,
    and the pool, its reaper and other jobs go on."""

    @queue.task(name="hand.boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @queue.task(name="hand.ok")
    async def ok() -> str:
        return "ok"

    bad = await boom.enqueue()
    weird = await ok.enqueue()
    await queue.redis.hset(queue.keys.job(bad.id), mapping={"retries": "many", "timeout": "soon"})
    await queue.redis.hset(queue.keys.job(weird.id), mapping={"timeout": "-3"})
    good = await ok.enqueue()
    pool = Pool(queue, concurrency=2, poll_interval=0.05, heartbeat_interval=0.2, stale_timeout=1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with pytest.raises(JobFailed, match="boom"):
                await bad.result()
            assert await weird.result() == "ok"
            assert await good.result() == "ok"
            pool.stop()
