"""Pool behaviour in process, against a real Redis: threads, order, due times, retries, timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _util import must, run_pool, wait_for, wait_idle, wait_status

from aiotaskq import JobFailed, JobStatus, Queue, Retry, Task
from aiotaskq.testing import job_fields

CANCELLED = asyncio.CancelledError  # the pool runs on asyncio


async def test_plain_function_runs_in_a_worker_thread(queue: Queue) -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}
    release = threading.Event()

    @queue.task
    def blocking() -> bool:
        threads["sync"] = threading.get_ident()
        # Blocks its thread until the async task below ran: if plain functions ran on
        # the event loop, the async task could never run and this would time out.
        return release.wait(5)

    @queue.task
    async def nonblocking() -> None:
        threads["async"] = threading.get_ident()
        release.set()

    async with run_pool(queue, concurrency=2):
        job = await blocking.enqueue()
        await wait_for(lambda: "sync" in threads, what="the plain task to start")
        await nonblocking.enqueue()
        assert await job.result(timeout=5) is True
    assert threads["sync"] != loop_thread
    assert threads["async"] == loop_thread


async def test_priorities_then_fifo_within_a_priority(queue: Queue) -> None:
    order: list[str] = []

    @queue.task
    async def record(label: str) -> None:
        order.append(label)

    @queue.task(priority=7)
    async def urgent(label: str) -> None:
        order.append(label)

    specs = [("a", 0), ("b", 5), ("c", -3), ("d", 5), ("e", 0), ("f", 1000), ("g", -3), ("h", -1000), ("i", 0)]
    for label, prio in specs:
        await record.options(priority=prio).enqueue(label)
    await urgent.enqueue("task-default-7")
    async with run_pool(queue, concurrency=1):
        await wait_for(lambda: len(order) == len(specs) + 1, what="every job to run")
    assert order == ["f", "task-default-7", "b", "d", "a", "e", "i", "c", "g", "h"]


async def test_idle_pool_wakes_at_once_for_a_new_job(queue: Queue) -> None:
    started: list[float] = []

    @queue.task
    async def tick() -> None:
        started.append(time.time())

    async with run_pool(queue, poll_interval=5.0, idle=True) as pool:
        for n in range(3):
            await wait_idle(pool)
            t0 = time.time()
            job = await tick.enqueue()
            await job.result(timeout=3)
            # poll_interval is 5 s: only a wake-up through Redis can start it this soon.
            assert started[n] - t0 < 0.25


async def test_delayed_job_waits_then_starts_at_its_due_time(queue: Queue) -> None:
    started: dict[str, float] = {}

    @queue.task
    async def tick(label: str) -> None:
        started[label] = time.time()

    async with run_pool(queue, poll_interval=5.0, idle=True):
        far = must(await tick.options(delay=30).enqueue("far"))
        near = must(await tick.options(delay=timedelta(milliseconds=400)).enqueue("near"))
        assert await near.status() is JobStatus.SCHEDULED
        await anyio.sleep(0.2)  # half-way to the due time: it must still wait
        assert await near.status() is JobStatus.SCHEDULED
        assert "near" not in started
        await near.result(timeout=3)
    info = await near.info()
    assert info.enqueued_at is not None and info.scheduled_at is not None
    assert info.scheduled_at - info.enqueued_at == timedelta(milliseconds=400)
    lateness = started["near"] - info.scheduled_at.timestamp()
    # The pool (poll_interval=5) slept until the earliest due time, not a fixed tick.
    assert -0.002 <= lateness < 0.06, lateness
    assert await far.status() is JobStatus.SCHEDULED
    assert "far" not in started


async def test_job_at_an_aware_datetime(queue: Queue) -> None:
    started: list[float] = []

    @queue.task
    async def tick() -> None:
        started.append(time.time())

    at = datetime.now(timezone(timedelta(hours=5))) + timedelta(milliseconds=300)
    job = must(await tick.options(at=at).enqueue())
    info = await job.info()
    assert info.status is JobStatus.SCHEDULED
    assert info.scheduled_at is not None
    assert abs((info.scheduled_at - at).total_seconds()) < 0.001
    past = must(await tick.options(at=datetime.now(UTC) - timedelta(hours=1)).enqueue())
    assert await past.status() is JobStatus.QUEUED
    async with run_pool(queue, poll_interval=5.0):
        await job.result(timeout=3)
        await past.result(timeout=3)
    assert len(started) == 2
    assert max(started) >= at.timestamp() - 0.002


async def test_retries_until_success(queue: Queue) -> None:
    calls = 0

    @queue.task(retries=3, backoff=(0.0, 0.0))
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ValueError(f"boom {calls}")
        return "ok"

    async with run_pool(queue):
        job = await flaky.enqueue()
        assert await job.result(timeout=5) == "ok"
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 4
    assert info.max_retries == 3


async def test_out_of_retries_ends_failed_with_error_and_traceback(queue: Queue) -> None:
    calls = 0

    @queue.task(retries=3, backoff=(0.0, 0.0))
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ValueError(f"boom {calls}")

    async with run_pool(queue):
        job = must(await flaky.options(retries=1).enqueue())
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=5)
    assert calls == 2
    assert caught.value.error == "ValueError: boom 2"
    assert "Traceback" in caught.value.traceback and 'raise ValueError(f"boom {calls}")' in caught.value.traceback
    info = await job.info()
    assert info.status is JobStatus.FAILED
    assert info.attempts == 2
    assert info.error == "ValueError: boom 2"
    assert info.traceback is not None and "ValueError" in info.traceback
    assert await queue.job_ids(JobStatus.FAILED) == [job.id]


async def test_backoff_bounds_the_wait_between_attempts(queue: Queue) -> None:
    starts: list[float] = []
    fails: list[float] = []

    @queue.task(retries=3, backoff=(0.05, 0.1))
    async def flaky() -> None:
        starts.append(time.time())
        if len(starts) <= 3:
            fails.append(time.time())
            raise RuntimeError("again")

    async with run_pool(queue, poll_interval=5.0):
        job = await flaky.enqueue()
        await job.result(timeout=5)
    ceilings = [0.05, 0.1, 0.1]  # min doubling per attempt, capped at max
    for n, ceiling in enumerate(ceilings):
        gap = starts[n + 1] - fails[n]
        assert -0.002 <= gap <= ceiling + 0.06, (n, gap)
    assert (await job.info()).attempts == 4


async def test_custom_backoff_delay_is_honoured(queue: Queue) -> None:
    starts: list[float] = []
    fails: list[float] = []

    @queue.task(retries=2, backoff=lambda attempt: 0.15 * attempt)
    async def flaky() -> None:
        starts.append(time.time())
        if len(starts) <= 2:
            fails.append(time.time())
            raise RuntimeError("again")

    async with run_pool(queue, poll_interval=5.0):
        job = await flaky.enqueue()
        await job.result(timeout=5)
    for n, delay in enumerate([0.15, 0.3]):
        gap = starts[n + 1] - fails[n]
        assert delay - 0.002 <= gap <= delay + 0.06, (n, gap)


async def test_raise_retry_counts_an_attempt_and_honours_its_delay(queue: Queue) -> None:
    starts: list[float] = []

    @queue.task(retries=1, backoff=(60.0, 60.0))
    async def later() -> int:
        starts.append(time.time())
        if len(starts) == 1:
            raise Retry(delay=0.3)
        return len(starts)

    async with run_pool(queue, poll_interval=5.0):
        job = await later.enqueue()
        await wait_status(queue, job.id, JobStatus.SCHEDULED)
        info = await job.info()
        assert info.attempts == 1
        assert info.error is not None and info.error.startswith("Retry requested")
        assert await job.result(timeout=3) == 2
    info = await job.info()
    assert info.attempts == 2
    assert 0.3 - 0.002 <= starts[1] - starts[0] < 0.3 + 0.1


async def test_retry_with_no_retries_left_ends_failed(queue: Queue) -> None:
    calls = 0

    @queue.task
    async def again() -> None:
        nonlocal calls
        calls += 1
        raise Retry(delay=0.0)

    async with run_pool(queue):
        job = await again.enqueue()
        with pytest.raises(JobFailed, match="no retries are left"):
            await job.result(timeout=3)
    assert calls == 1
    assert (await job.info()).attempts == 1


async def test_timeout_cancels_the_job_and_counts_an_attempt(queue: Queue) -> None:
    cancelled = 0

    @queue.task(retries=1, backoff=(0.0, 0.0))
    async def slow() -> None:
        nonlocal cancelled
        try:
            await anyio.sleep(10)
        except CANCELLED:
            cancelled += 1
            raise

    async with run_pool(queue):
        t0 = time.monotonic()
        job = must(await slow.options(timeout=0.2).enqueue())
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=5)
        elapsed = time.monotonic() - t0
    assert cancelled == 2  # both attempts were cut short by the timeout
    assert 0.4 <= elapsed < 2.0
    assert "timeout" in caught.value.error and "0.2s" in caught.value.error
    info = await job.info()
    assert info.status is JobStatus.FAILED
    assert info.attempts == 2
    assert info.duration is not None and 0.19 <= info.duration < 1.0


async def test_task_default_timeout(queue: Queue) -> None:
    @queue.task(timeout=0.1)
    async def slow() -> None:
        await anyio.sleep(10)

    async with run_pool(queue):
        job = await slow.enqueue()
        with pytest.raises(JobFailed, match=r"timeout of 0\.1s"):
            await job.result(timeout=3)


def _counting_task(q: Queue, counter: Counter[int]) -> Task[[int], Any]:
    @q.task(name="count")
    async def count(i: int) -> None:
        counter[i] += 1
        await anyio.lowlevel.checkpoint()

    return count


async def test_two_pools_never_run_a_job_twice(queue: Queue, redis_url: str) -> None:
    n = 1000
    counter: Counter[int] = Counter()
    count = _counting_task(queue, counter)
    async with Queue(queue.name, url=redis_url) as other:
        _counting_task(other, counter)
        async with (
            run_pool(queue, concurrency=20, idle=True) as p1,
            run_pool(other, concurrency=20, idle=True) as p2,
        ):
            jobs = await count.enqueue_many([(i,) for i in range(n)])

            async def all_done() -> bool:
                return (await queue.counts())[JobStatus.SUCCEEDED] == n

            await wait_for(all_done, timeout=30, what=f"{n} jobs to succeed")
        assert counter == Counter(range(n))  # every job ran, and exactly once
        assert all(job is not None for job in jobs)
        stored = await job_fields(queue, [job.id for job in jobs if job is not None])
        owners = Counter(f["pool"].decode() for f in stored if f is not None and f.get("attempts") == b"1")
        assert sum(owners.values()) == n
        assert set(owners) == {*p1.pool_ids, *p2.pool_ids}  # both pools took part
