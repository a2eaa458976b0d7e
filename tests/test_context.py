"""The running job's context: ``current_job()``, progress reports, ``Retry(at=...)``."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from _util import run_pool, wait_status

from aiotaskq import JobContext, JobFailed, JobStatus, Queue, Retry, current_job
from aiotaskq._record import encode_record
from aiotaskq.context import MAX_NOTE, validate_progress
from aiotaskq.testing import job_fields


def _seen(ctx: JobContext) -> dict[str, Any]:
    return {"id": ctx.id, "attempt": ctx.attempt, "queue": ctx.queue, "task": ctx.task,
            "enqueued_at": ctx.enqueued_at, "max_retries": ctx.max_retries}  # fmt: skip


async def test_a_coroutine_task_sees_its_job(queue: Queue) -> None:
    seen: list[dict[str, Any]] = []

    @queue.task(name="ctx.async", retries=2)
    async def job_task() -> None:
        seen.append(_seen(current_job()))

    before = datetime.now(UTC)
    job = await job_task.enqueue()
    async with run_pool(queue):
        await job.result(timeout=5)
    info = await job.info()
    [ctx] = seen
    assert ctx == {"id": job.id, "attempt": 1, "queue": queue.name, "task": "ctx.async",
                   "enqueued_at": info.enqueued_at, "max_retries": 2}  # fmt: skip
    assert ctx["enqueued_at"] is not None
    assert abs((ctx["enqueued_at"] - before).total_seconds()) < 5  # the Redis clock, to the millisecond


async def test_a_plain_function_task_sees_its_job_in_its_thread(queue: Queue) -> None:
    seen: list[tuple[dict[str, Any], bool]] = []

    @queue.task(name="ctx.sync")
    def job_task() -> None:
        seen.append((_seen(current_job()), threading.current_thread() is threading.main_thread()))

    job = await job_task.enqueue()
    async with run_pool(queue, idle=True):  # idle: the job is handed over (the inbox record path)
        handed = await job_task.enqueue()
        await job.result(timeout=5)
        await handed.result(timeout=5)
    by_id = {s["id"]: (s, main) for s, main in seen}
    for j in (job, handed):
        ctx, in_main_thread = by_id[j.id]
        assert not in_main_thread
        assert ctx["task"] == "ctx.sync" and ctx["queue"] == queue.name and ctx["attempt"] == 1
        assert ctx["enqueued_at"] == (await j.info()).enqueued_at


async def test_current_job_outside_a_task_is_a_lookup_error(queue: Queue) -> None:
    with pytest.raises(LookupError, match="no aiotaskq job is running"):
        current_job()

    @queue.task(name="ctx.spawns")
    async def spawns() -> str:
        return current_job().id

    job = await spawns.enqueue()
    async with run_pool(queue):
        assert await job.result(timeout=5) == job.id
    with pytest.raises(LookupError):  # the pool's context did not leak into the caller
        current_job()


async def test_attempt_counts_the_starts(queue: Queue) -> None:
    attempts: list[int] = []

    @queue.task(name="ctx.retry", retries=2)
    async def flaky() -> int:
        attempts.append(current_job().attempt)
        if len(attempts) < 3:
            raise Retry(delay=0)
        return current_job().attempt

    job = await flaky.enqueue()
    async with run_pool(queue):
        assert await job.result(timeout=5) == 3
    assert attempts == [1, 2, 3]


# -- progress -------------------------------------------------------------------------------------


async def test_progress_is_stored_and_shown_in_job_info(queue: Queue) -> None:
    reported = anyio.Event()
    go_on = anyio.Event()

    @queue.task(name="ctx.progress")
    async def work() -> None:
        assert await current_job().progress(0.5, note="5 of 10")
        reported.set()
        await go_on.wait()
        assert await current_job().progress(1)  # no note: the last one is removed

    job = await work.enqueue()
    assert (await job.info()).progress is None  # never set
    assert (await job.info()).progress_note is None
    async with run_pool(queue):
        with anyio.fail_after(5):
            await reported.wait()
        info = await job.info()
        assert (info.status, info.progress, info.progress_note) == (JobStatus.ACTIVE, 0.5, "5 of 10")
        go_on.set()
        await job.result(timeout=5)
    info = await job.info()
    assert (info.progress, info.progress_note) == (1.0, None)


async def test_a_job_that_starts_over_forgets_its_progress(queue: Queue) -> None:
    """requeue_failed() and reschedule() start a job over: its old progress goes with its error."""

    @queue.task(name="ctx.half_then_fail")
    async def work() -> None:
        await current_job().progress(0.5, note="half")
        raise ValueError("no")

    job = await work.enqueue()
    async with run_pool(queue):
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
    assert (await job.info()).progress == 0.5
    assert await queue.requeue_failed([job.id]) == 1
    info = await job.info()
    assert (info.status, info.progress, info.progress_note) == (JobStatus.QUEUED, None, None)
    async with run_pool(queue):  # it runs, reports progress and fails again
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
    assert (await job.info()).progress_note == "half"
    assert await job.reschedule(delay=60)
    info = await job.info()
    assert (info.status, info.progress, info.progress_note) == (JobStatus.SCHEDULED, None, None)


async def test_progress_sync_from_a_plain_function_task(queue: Queue) -> None:
    @queue.task(name="ctx.progress_sync")
    def work(n: int) -> bool:
        ok = True
        for i in range(1, n + 1):
            ok = current_job().progress_sync(i / n, note=f"{i} of {n}") and ok
        return ok

    job = await work.enqueue(4)
    async with run_pool(queue):
        assert await job.result(timeout=5) is True
    info = await job.info()
    assert (info.progress, info.progress_note) == (1.0, "4 of 4")


async def test_bad_progress_fails_the_call_with_a_value_error(queue: Queue) -> None:
    @queue.task(name="ctx.bad_progress")
    async def work() -> str:
        try:
            await current_job().progress(1.5)
        except ValueError as exc:
            return str(exc)
        return "accepted"

    job = await work.enqueue()
    async with run_pool(queue):
        assert (await job.result(timeout=5)).startswith("value: progress must be from 0 to 1")
    assert (await job.info()).progress is None


@pytest.mark.parametrize(
    ("value", "note", "message"),
    [
        (-0.1, None, "^value: progress must be from 0 to 1"),
        (1.0001, None, "^value: progress must be from 0 to 1"),
        (float("nan"), None, "^value: progress must be a number"),
        (float("inf"), None, "^value: progress must be a number"),
        (True, None, "^value: progress must be a number"),
        ("0.5", None, "^value: progress must be a number"),
        (0.5, "x" * (MAX_NOTE + 1), f"^note: at most {MAX_NOTE} characters"),
        (0.5, 42, "^note: must be a str or None"),
    ],
)
def test_validate_progress(value: Any, note: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_progress(value, note)


@pytest.mark.parametrize(("value", "note"), [(0, None), (1, "done"), (0.25, ""), (0.5, "x" * MAX_NOTE)])
def test_validate_progress_accepts(value: float, note: str | None) -> None:
    assert validate_progress(value, note) == float(value)


async def test_progress_is_fenced_by_pool_and_attempt(queue: Queue) -> None:
    """A stale attempt (a pool declared dead, an older attempt) cannot write progress."""
    k, r = queue.keys, queue.redis
    raw = encode_record({b"status": b"queued", b"task": b"t", b"enq_at": b"1000"})
    entry = b"P|2|2000|||"  # active under pool P, attempt 2
    await r.hset(k.jobs, "j", raw)
    await r.hset(k.active, "j", entry)
    await r.sadd(k.pool("P"), "j")
    s = queue.scripts
    assert await s.progress("j", "P", 1, 0.9, "old attempt") == -1
    assert await s.progress("j", "Q", 2, 0.9, "other pool") == -1
    assert await r.hget(k.active, "j") == entry
    (f,) = await job_fields(queue, ["j"])
    assert f is not None and f["status"] == b"active" and "progress" not in f
    assert await s.progress("j", "P", 2, 0.25, "mine") == 1
    (f,) = await job_fields(queue, ["j"])
    assert f is not None and (f.get("progress"), f.get("progress_note")) == (b"0.25", b"mine")
    # The job ends (as close_job writes it): out of both hashes, its ended record in job:j.
    now: bytes | None = await r.hget(k.active, "j")  # type: ignore[assignment]
    assert now is not None and now.endswith(b"|0.25|mine")
    entry = now
    ended = b"S|3000|1000|%d|0|0|0|" % len(entry) + entry + raw
    await r.hdel(k.jobs, "j")
    await r.hdel(k.active, "j")
    await r.set(k.job("j"), ended)
    assert (await job_fields(queue, ["j"]))[0]["status"] == b"succeeded"  # type: ignore[index]
    assert await s.progress("j", "P", 2, 0.5, None) == -1  # ended: nothing more is written
    assert await r.get(k.job("j")) == ended
    assert not await r.hexists(k.jobs, "j") and not await r.hexists(k.active, "j")
    assert await s.progress("missing", "P", 1, 0.5, None) == -1
    assert await job_fields(queue, ["missing"]) == [None]
    assert not await r.exists(k.job("missing"))


async def test_progress_of_a_cancelled_job_returns_false(queue: Queue) -> None:
    started = anyio.Event()
    results: list[bool] = []

    @queue.task(name="ctx.cancelled")
    async def work() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            with anyio.CancelScope(shield=True):
                results.append(await current_job().progress(0.9))

    job = await work.enqueue()
    async with run_pool(queue):
        with anyio.fail_after(5):
            await started.wait()
        assert await job.cancel()
        await wait_status(queue, job.id, JobStatus.CANCELLED)
    assert results == [True]  # still active under this attempt while its clean-up runs
    assert (await job.info()).progress == 0.9


# -- Retry(at=...) --------------------------------------------------------------------------------


async def test_retry_at_a_time_schedules_the_retry_then(queue: Queue) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)

    @queue.task(name="ctx.retry_at", retries=1)
    async def later() -> None:
        raise Retry(at=at)

    job = await later.enqueue()
    async with run_pool(queue):
        await wait_status(queue, job.id, JobStatus.SCHEDULED)
    info = await job.info()
    assert info.attempts == 1
    assert info.scheduled_at is not None
    assert abs((info.scheduled_at - at).total_seconds()) < 2


async def test_retry_at_a_past_time_retries_now(queue: Queue) -> None:
    @queue.task(name="ctx.retry_past", retries=1)
    async def again() -> int:
        if current_job().attempt == 1:
            raise Retry(at=datetime.now(UTC) - timedelta(days=1))
        return current_job().attempt

    job = await again.enqueue()
    t0 = time.monotonic()
    async with run_pool(queue):
        assert await job.result(timeout=5) == 2
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at": datetime(2030, 1, 1)}, "^at: must be a timezone-aware datetime"),  # naive on purpose
        ({"at": "2030-01-01"}, "^at: must be a timezone-aware datetime"),
        ({"delay": 1.0, "at": datetime(2030, 1, 1, tzinfo=UTC)}, "^delay, at: give one"),
        ({"delay": -1}, "^delay: must be"),
        ({"delay": float("nan")}, "^delay: must be"),
        ({"delay": float("inf")}, "^delay: must be"),
    ],
)
def test_retry_rejects_bad_times(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retry(**kwargs)


def test_retry_times() -> None:
    assert Retry().seconds_from_now() is None
    assert Retry(5).seconds_from_now() == 5
    assert Retry(delay=timedelta(minutes=2)).seconds_from_now() == 120
    soon = Retry(at=datetime.now(UTC) + timedelta(seconds=60)).seconds_from_now()
    assert soon is not None and 58 < soon <= 60
    assert Retry(at=datetime.now(UTC) - timedelta(seconds=60)).seconds_from_now() == 0.0
