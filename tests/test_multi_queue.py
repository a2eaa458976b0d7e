from __future__ import annotations

import anyio
from _util import run_pool, wait_for

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


async def test_a_pool_on_several_queues_never_holds_more_jobs_than_its_concurrency(
    redis_url: str, queue: Queue
) -> None:
    """Claim loops of different queues share the pool's slots: each claim reserves the
    slots it asks for, so two loops never claim the same free slots (jobs claimed beyond
    them would sit active in Redis, held from other pools, waiting for a worker)."""
    other = Queue(queue.name + "-b", url=redis_url)
    held: list[int] = []
    pools: list[Pool] = []

    async def work(i: int) -> None:
        held.append(sum(len(r.running) for r in pools[0].runners))
        await anyio.sleep(0.005)

    on_a, on_b = queue.task(name="a")(work), other.task(name="b")(work)
    try:
        await on_a.enqueue_many([(i,) for i in range(300)])
        await on_b.enqueue_many([(i,) for i in range(300)])
        async with run_pool([queue, other], concurrency=10) as pool:
            pools.append(pool)
            await wait_for(lambda: len(held) == 600, timeout=20, what="600 jobs")
        assert max(held) == 10
        for q in (queue, other):
            assert (await q.counts())[JobStatus.SUCCEEDED] == 300
    finally:
        await other.close()
