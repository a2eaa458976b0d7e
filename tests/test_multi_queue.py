from __future__ import annotations

import anyio

from aiotaskq import JobStatus, Pool, Queue
from aiotaskq.testing import drain


async def test_one_pool_serves_several_queues(redis_url: str, queue: Queue) -> None:
    other = Queue(queue.name + "-b", url=redis_url)
    seen: list[str] = []

    @queue.task(name="a")
    async def on_a() -> str:
        seen.append("a")
        return "a"

    @other.task(name="b")
    async def on_b() -> str:
        seen.append("b")
        return "b"

    try:
        ja = await on_a.enqueue()
        jb = await on_b.enqueue()
        pool = Pool([queue, other], concurrency=4, poll_interval=5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            assert await ja.result(timeout=5) == "a"
            assert await jb.result(timeout=5) == "b"
            # An idle pool on two queues wakes for either of them at once.
            late = await on_b.enqueue()
            with anyio.fail_after(1.0):
                assert await late.result() == "b"
            pool.stop()
        assert sorted(seen) == ["a", "b", "b"]
        assert (await other.counts())[JobStatus.SUCCEEDED] == 2
        # A stopped pool unregisters from every queue it served.
        assert await queue.redis.zcard(queue.keys.pools) == 0
        assert await other.redis.zcard(other.keys.pools) == 0
    finally:
        await other.close()


async def test_drain_runs_due_jobs_and_leaves_future_ones(queue: Queue) -> None:
    @queue.task(name="n")
    async def n(x: int) -> int:
        return x * 2

    now_jobs = [await n.enqueue(i) for i in range(20)]
    later = await n.options(delay=60).enqueue(99)
    assert later is not None
    await drain(queue, timeout=10, concurrency=5)
    assert [await j.result(timeout=1) for j in now_jobs] == [i * 2 for i in range(20)]
    assert await later.status() is JobStatus.SCHEDULED
