from __future__ import annotations

import anyio

from aiotaskq import JobStatus, Pool, Queue


async def test_jobs_claimed_by_a_lost_reply_are_given_back(queue: Queue) -> None:
    """A claim that ran in Redis but whose reply never reached the pool leaves jobs
    in the pool's set that it never started; the pool finds and requeues them,
    without charging an attempt, and then runs them."""
    ran: list[int] = []

    @queue.task(name="lost.work")
    async def work(i: int) -> None:
        ran.append(i)

    jobs = [await work.enqueue(i) for i in range(3)]
    pool = Pool(queue, concurrency=4, heartbeat_interval=0.2, stale_timeout=1.0, poll_interval=0.05)
    runner = pool.runners[0]
    # Register the pool and claim behind its back, as if the reply had been lost.
    await queue.scripts.heartbeat(runner.pool_id, register=True, info="{}", ttl_ms=60_000)
    out = await queue.scripts.claim(runner.pool_id, 3)
    assert out[2] == 0 and len(out[3:]) == 9  # three jobs claimed: id, attempt, record each
    assert {await j.status() for j in jobs} == {JobStatus.ACTIVE}

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            for j in jobs:
                await j.result()  # typed None (the task returns nothing): it ended succeeded
            pool.stop()
    assert sorted(ran) == [0, 1, 2]
    for j in jobs:
        assert (await j.info()).attempts == 1  # the lost claim was not charged
