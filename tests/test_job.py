"""The Job handle: info(), result(), cancel(), reschedule(), against a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from _util import must, queued_ids, run_pool, wait_for, wait_status

from aiotaskq import JobCancelled, JobFailed, JobNotFound, JobStatus, Queue


async def test_round_trip_and_info_fields(queue: Queue) -> None:
    @queue.task
    async def add(x: int, y: int) -> int:
        await anyio.sleep(0.02)
        return x + y

    before = datetime.now(UTC)
    job = must(await add.options(priority=3).enqueue(2, y=5))
    info = await job.info()
    assert info.id == job.id
    assert info.task == add.name == f"{__name__}.test_round_trip_and_info_fields.<locals>.add"
    assert (info.args, info.kwargs) == ((2,), {"y": 5})
    assert info.status is JobStatus.QUEUED
    assert (info.priority, info.attempts, info.max_retries) == (3, 0, 0)
    assert info.enqueued_at is not None and info.enqueued_at.tzinfo is not None
    assert abs((info.enqueued_at - before).total_seconds()) < 1
    assert info.scheduled_at == info.enqueued_at
    assert info.started_at is None and info.finished_at is None and info.duration is None
    assert info.result is None and info.error is None and info.pool_id is None

    async with run_pool(queue) as pool:
        assert await job.result(timeout=5) == 7
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 1
    assert info.result == 7
    assert info.error is None and info.traceback is None
    assert info.pool_id in pool.pool_ids
    assert info.enqueued_at is not None and info.started_at is not None and info.finished_at is not None
    assert info.enqueued_at <= info.started_at <= info.finished_at
    assert info.duration is not None and 0.015 <= info.duration < 1
    assert info.duration == pytest.approx((info.finished_at - info.started_at).total_seconds(), abs=0.001)
    assert await job.status() is JobStatus.SUCCEEDED
    assert await queue.job(job.id).result(timeout=1) == 7  # a fresh handle by id


async def test_result_waits_for_a_job_enqueued_before_the_pool_started(queue: Queue) -> None:
    @queue.task
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    job = await echo.enqueue({"a": [1, 2.5, "x", None]})
    results: list[Any] = []

    async def wait() -> None:
        results.append(await job.result(timeout=5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.05)  # the waiter is subscribed and waiting
        async with run_pool(queue):
            await wait_for(lambda: bool(results), what="the waiter to get the result")
    assert results == [{"a": [1, 2.5, "x", None]}]


async def test_result_raises_job_failed_with_error_and_traceback(queue: Queue) -> None:
    @queue.task
    async def broken() -> None:
        raise KeyError("missing thing")

    async with run_pool(queue):
        job = await broken.enqueue()
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=5)
    assert caught.value.job_id == job.id
    assert caught.value.error == "KeyError: 'missing thing'"
    assert "Traceback (most recent call last)" in caught.value.traceback
    assert 'raise KeyError("missing thing")' in caught.value.traceback
    assert job.id in str(caught.value)


async def test_result_raises_job_cancelled(queue: Queue) -> None:
    @queue.task
    async def never() -> None:
        raise AssertionError("must not run")

    job = await never.enqueue()
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await job.result(timeout=5)
        except JobCancelled as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.05)
        t0 = time.monotonic()
        assert await job.cancel() is True
        await wait_for(lambda: bool(outcome), timeout=1, what="the waiter to see the cancellation")
        # Told through pub/sub, well before the waiter's 5 s safety poll.
        assert time.monotonic() - t0 < 0.5
    with pytest.raises(JobCancelled):
        await job.result(timeout=1)


async def test_result_timeout_and_no_busy_polling(queue: Queue) -> None:
    @queue.task
    async def never() -> None:
        raise AssertionError("no pool runs")

    job = await never.enqueue()

    async def calls() -> Counter[str]:
        stats = await queue.redis.info("commandstats")
        # ours, a new connection's, the listener's one probe for shard channels, a replica's (a cluster)
        setup = {"cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_pubsub|shardnumsub",
                 "cmdstat_replconf"}  # fmt: skip
        return Counter({name: int(v["calls"]) for name, v in stats.items() if name not in setup})

    before = await calls()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await job.result(timeout=1.5)
    assert 1.5 <= time.monotonic() - t0 < 2.5
    delta = await calls() - before
    # Subscribe, one status read, unsubscribe: a busy poll would have made dozens of calls. A
    # status read is one transaction: MULTI, HGET jobs, HGET active, GET job:<id>, EXEC.
    reads = delta["cmdstat_exec"]
    assert reads <= 2 and delta["cmdstat_multi"] == reads, delta
    assert delta["cmdstat_hget"] <= 2 * reads and delta["cmdstat_get"] <= reads, delta
    assert delta.total() - 4 * reads <= 6, delta  # each read counted as one call


async def test_result_status_info_of_an_unknown_job(queue: Queue) -> None:
    job = queue.job("no-such-job")
    with pytest.raises(JobNotFound) as caught:
        await job.result(timeout=1)
    assert caught.value.job_id == "no-such-job"
    assert isinstance(caught.value, LookupError)
    with pytest.raises(JobNotFound):
        await job.status()
    with pytest.raises(JobNotFound):
        await job.info()


async def test_cancel_scheduled_and_queued_jobs(queue: Queue) -> None:
    @queue.task
    async def never() -> None:
        raise AssertionError("must not run")

    k = queue.keys
    scheduled = must(await never.options(delay=60).enqueue())
    queued = await never.enqueue()
    assert await queue.redis.zscore(k.scheduled, scheduled.id) is not None
    assert queued.id.encode() in await queued_ids(queue)

    assert await scheduled.cancel() is True
    assert await queued.cancel() is True
    for job in (scheduled, queued):
        info = await job.info()
        assert info.status is JobStatus.CANCELLED
        assert info.finished_at is not None and info.attempts == 0
        assert await queue.redis.zscore(k.cancelled, job.id) is not None
    assert await queue.redis.zcard(k.scheduled) == 0
    assert await queued_ids(queue) == []
    counts = await queue.counts()
    assert counts[JobStatus.CANCELLED] == 2 and counts[JobStatus.SCHEDULED] == counts[JobStatus.QUEUED] == 0
    # A pool started now runs neither: a job enqueued after them is claimed and ends, they stay cancelled.
    async with run_pool(queue):
        sentinel = await queue.enqueue("sentinel")
        assert sentinel is not None
        with pytest.raises(JobFailed, match="UnknownTask"):
            await sentinel.result(timeout=3)
    assert await scheduled.status() is JobStatus.CANCELLED
    assert await queued.status() is JobStatus.CANCELLED


async def test_cancel_a_running_job(queue: Queue) -> None:
    started = anyio.Event()
    saw_cancel: list[bool] = []

    @queue.task
    async def long() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        except asyncio.CancelledError:
            saw_cancel.append(True)
            raise

    @queue.task
    async def after() -> str:
        return "pool goes on"

    async with run_pool(queue, concurrency=1) as pool:
        job = await long.enqueue()
        with anyio.fail_after(5):
            await started.wait()
        assert await job.status() is JobStatus.ACTIVE
        t0 = time.monotonic()
        assert await job.cancel() is True
        with pytest.raises(JobCancelled):
            await job.result(timeout=2)
        assert time.monotonic() - t0 < 0.5  # reached the pool through pub/sub, not a heartbeat
        assert saw_cancel == [True]
        info = await job.info()
        assert info.status is JobStatus.CANCELLED
        assert info.attempts == 1
        assert not await queue.redis.smembers(queue.keys.pool(pool.pool_ids[0]))
        assert await queue.redis.zscore(queue.keys.cancelled, job.id) is not None
        # The slot is free again: the next job runs.
        assert await (await after.enqueue()).result(timeout=3) == "pool goes on"


async def test_cancel_a_running_plain_function(queue: Queue) -> None:
    @queue.task
    def blocking() -> None:
        time.sleep(0.3)

    async with run_pool(queue, concurrency=1):
        job = await blocking.enqueue()
        await wait_status(queue, job.id, JobStatus.ACTIVE)
        assert await job.cancel() is True
        with pytest.raises(JobCancelled):
            await job.result(timeout=2)


async def test_cancel_of_an_ended_or_unknown_job_returns_false(queue: Queue) -> None:
    @queue.task
    async def ok() -> int:
        return 1

    async with run_pool(queue):
        job = await ok.enqueue()
        assert await job.result(timeout=5) == 1
    assert await job.cancel() is False
    assert await job.status() is JobStatus.SUCCEEDED
    assert await queue.job("nope").cancel() is False
    queued = await ok.enqueue()
    assert await queued.cancel() is True
    assert await queued.cancel() is False  # already cancelled


async def test_reschedule_a_failed_job(queue: Queue) -> None:
    fail = True
    starts: list[float] = []

    @queue.task(retries=0)
    async def flaky() -> str:
        starts.append(time.time())
        if fail:
            raise RuntimeError("first time")
        return "second time"

    async with run_pool(queue, poll_interval=5.0):
        job = await flaky.enqueue()
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
        fail = False
        t0 = time.time()
        assert await job.reschedule(delay=0.3) is True
        info = await job.info()
        assert info.status is JobStatus.SCHEDULED
        assert info.attempts == 0 and info.error is None and info.finished_at is None
        assert await queue.redis.zscore(queue.keys.failed, job.id) is None
        assert await queue.redis.zscore(queue.keys.scheduled, job.id) is not None
        assert await job.result(timeout=3) == "second time"
    assert starts[1] - t0 >= 0.3 - 0.002
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED and info.attempts == 1


async def test_reschedule_a_cancelled_job_at_a_time(queue: Queue) -> None:
    starts: list[float] = []

    @queue.task
    async def ok() -> str:
        starts.append(time.time())
        return "ran"

    job = await ok.enqueue()
    assert await job.cancel() is True
    at = datetime.now(UTC) + timedelta(milliseconds=300)
    assert await job.reschedule(at=at) is True
    info = await job.info()
    assert info.status is JobStatus.SCHEDULED
    assert info.scheduled_at is not None and abs((info.scheduled_at - at).total_seconds()) < 0.001
    assert await queue.redis.zscore(queue.keys.cancelled, job.id) is None
    async with run_pool(queue, poll_interval=5.0):
        assert await job.result(timeout=3) == "ran"
    assert starts[0] >= at.timestamp() - 0.002


async def test_reschedule_a_queued_job_moves_it_to_scheduled(queue: Queue) -> None:
    starts: list[float] = []

    @queue.task
    async def ok() -> None:
        starts.append(time.time())

    job = await ok.enqueue()
    t0 = time.time()
    assert await job.reschedule(delay=timedelta(milliseconds=300)) is True
    assert await job.status() is JobStatus.SCHEDULED
    assert job.id.encode() not in await queued_ids(queue)
    async with run_pool(queue, poll_interval=5.0):
        await job.result(timeout=3)
    assert starts[0] - t0 >= 0.3 - 0.002


async def test_reschedule_refuses_succeeded_active_and_unknown_jobs(queue: Queue) -> None:
    release = anyio.Event()

    @queue.task
    async def wait() -> None:
        await release.wait()

    async with run_pool(queue):
        job = await wait.enqueue()
        await wait_status(queue, job.id, JobStatus.ACTIVE)
        assert await job.reschedule(delay=1) is False
        assert await job.status() is JobStatus.ACTIVE
        release.set()
        await job.result(timeout=3)
    assert await job.reschedule() is False
    assert await job.status() is JobStatus.SUCCEEDED
    assert await queue.job("unknown").reschedule() is False
    with pytest.raises(ValueError, match=r"^at:"):
        await job.reschedule(at=datetime.now())  # naive on purpose
