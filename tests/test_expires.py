"""``options(expires=...)``: a job not started within that many seconds of its due time ends
cancelled, with the reason as its error, when a pool next reaches it; the others run."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from _util import must, run_pool, wait_for

from aiotaskq import JobCancelled, JobStatus, Queue


async def _past(queue: Queue, ms: int) -> bool:
    sec, usec = await queue.redis.time()
    return int(sec) * 1000 + int(usec) // 1000 > ms


async def test_a_job_not_started_in_time_ends_cancelled_and_the_others_run(queue: Queue) -> None:
    @queue.task
    async def work(n: int) -> int:
        return n

    await queue.pause()  # nothing starts meanwhile
    sec, _ = await queue.redis.time()
    stale = must(await work.options(expires=0.2).enqueue(1))
    fresh = must(await work.options(expires=timedelta(minutes=5)).enqueue(2))
    plain = must(await work.enqueue(3))
    assert await queue.redis.zcard(queue.keys.prefix + "expires") == 2
    await wait_for(lambda: _past(queue, int(sec) * 1000 + 1500), 5, "the short expiry to pass")
    await queue.resume()
    async with run_pool(queue):
        assert await fresh.result(timeout=5) == 2
        assert await plain.result(timeout=5) == 3
        with pytest.raises(JobCancelled):
            await stale.result(timeout=5)
    info = await stale.info()
    assert info.status is JobStatus.CANCELLED and info.started_at is None
    assert info.error is not None and info.error.startswith("Expired: not started by its latest start time")
    assert await queue.redis.zcard(queue.keys.prefix + "expires") == 0  # nothing left to watch


async def test_the_expiry_counts_from_the_due_time(queue: Queue) -> None:
    @queue.task
    async def later() -> str:
        return "ran"

    job = must(await later.options(delay=0.5, expires=2).enqueue())  # due in 0.5 s, then 2 s to start
    async with run_pool(queue):
        assert await job.result(timeout=5) == "ran"


async def test_cancel_and_purge_forget_the_expiry(queue: Queue) -> None:
    a = must(await queue.enqueue("t.x", expires=60, delay=30))
    b = must(await queue.enqueue("t.x", expires=60))
    assert await queue.redis.zcard(queue.keys.prefix + "expires") == 2
    assert await a.cancel()
    assert await queue.redis.zscore(queue.keys.prefix + "expires", a.id) is None
    assert await queue.purge(JobStatus.QUEUED) == 1
    assert await queue.redis.zscore(queue.keys.prefix + "expires", b.id) is None


@pytest.mark.parametrize("bad", [0, -1, "soon", float("nan")])
async def test_a_bad_expiry_is_refused_at_enqueue(queue: Queue, bad: object) -> None:
    @queue.task
    async def work() -> None: ...

    with pytest.raises(ValueError, match=r"^expires:"):
        await work.options(expires=bad).enqueue()
    assert (await queue.counts())[JobStatus.QUEUED] == 0


async def test_many_expired_jobs_do_not_stall_a_claim(queue: Queue) -> None:
    """A claim that meets expired jobs pops again in their place: the live job behind 300
    expired ones starts at once, not after the poll interval."""

    @queue.task
    async def work(n: int) -> int:
        return n

    await queue.pause()
    await work.options(expires=0.1).enqueue_many([(n,) for n in range(300)])
    live = must(await work.enqueue(999))
    sec, _ = await queue.redis.time()
    await wait_for(lambda: _past(queue, int(sec) * 1000 + 1300), 5, "the expiries to pass")
    await queue.resume()
    t0 = time.monotonic()
    async with run_pool(queue, concurrency=5, poll_interval=30):
        assert await live.result(timeout=5) == 999
    assert time.monotonic() - t0 < 3
    assert (await queue.counts())[JobStatus.CANCELLED] == 300


async def test_the_docs_example_cancels_the_late_reminders_and_sends_the_fresh_one(redis_url: str) -> None:
    from docs.examples import expiry

    assert await expiry.main(redis_url) == ["cancelled: Expired"] * 3 + ["reminded 99"]
