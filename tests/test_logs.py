"""What the pool logs, and at which level: failures that will be retried say when, final
failures say they are out of retries (with the traceback), recurring ticks stay at DEBUG, a
shutdown names the jobs it waits for and the plain-function threads it cannot interrupt."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import anyio
import pytest
from _util import run_pool, wait_for, wait_status

from aiotaskq import JobFailed, JobStatus, Queue, Retry


def _records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiotaskq" and text in r.getMessage()]


async def test_a_failure_that_will_be_retried_says_when(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")

    @queue.task(name="log.flaky", retries=2, backoff=lambda attempt: 30.0)
    async def flaky() -> None:
        raise ConnectionError("upstream reset")

    job = await flaky.enqueue()
    async with run_pool(queue):
        await wait_status(queue, job.id, JobStatus.SCHEDULED)
        await wait_for(lambda: bool(_records(caplog, job.id)), 5, "the failure to be logged")
    [rec] = _records(caplog, job.id)
    assert rec.levelno == logging.INFO
    assert rec.getMessage() == (
        f"job {job.id} (log.flaky) attempt 1 of 3 failed: ConnectionError: upstream reset; "
        "retrying in 30.0s (attempt 2 of 3)"
    )


async def test_a_requested_retry_is_logged_at_info(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")

    @queue.task(name="log.later", retries=1)
    async def later() -> None:
        raise Retry(delay=12)

    job = await later.enqueue()
    async with run_pool(queue):
        await wait_status(queue, job.id, JobStatus.SCHEDULED)
        await wait_for(lambda: bool(_records(caplog, job.id)), 5, "the retry to be logged")
    [rec] = _records(caplog, job.id)
    assert rec.levelno == logging.INFO
    assert (
        rec.getMessage()
        == f"job {job.id} (log.later) attempt 1 of 2 asked for a retry; retrying in 12.0s (attempt 2 of 2)"
    )


async def test_a_final_failure_is_an_error_with_its_traceback(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")

    @queue.task(name="log.broken", retries=1, backoff=lambda attempt: 0.0)
    async def broken(path: str) -> None:
        raise ValueError(f"{path} line 3: 4 fields, expected 3")

    job = await broken.enqueue("c.csv")
    async with run_pool(queue):
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
        await wait_for(lambda: len(_records(caplog, job.id)) == 2, 5, "both attempts to be logged")
    retried, final = _records(caplog, job.id)
    assert retried.levelno == logging.INFO and "retrying in 0.0s (attempt 2 of 2)" in retried.getMessage()
    assert final.levelno == logging.ERROR
    text = final.getMessage()
    first_line, _, trace = text.partition("\n")
    assert first_line == (
        f"job {job.id} (log.broken) attempt 2 of 2 failed, out of retries (retries=1); "
        "the job is now failed: ValueError: c.csv line 3: 4 fields, expected 3"
    )
    assert trace.startswith("Traceback (most recent call last):")
    assert "in broken" in trace and trace.endswith("ValueError: c.csv line 3: 4 fields, expected 3")


async def test_a_job_that_cannot_run_is_an_error_saying_it_is_not_retried(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")
    job = await queue.enqueue("log.nobody-has-this", retries=3)
    assert job is not None
    async with run_pool(queue):
        await wait_status(queue, job.id, JobStatus.FAILED)
        await wait_for(lambda: bool(_records(caplog, job.id)), 5, "the failure to be logged")
    [rec] = _records(caplog, job.id)
    assert rec.levelno == logging.ERROR
    assert "failed, not retried: it cannot run as stored; the job is now failed: UnknownTask" in rec.getMessage()


async def test_recurring_ticks_log_at_debug(queue: Queue, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")

    @queue.task(name="log.tick", every=timedelta(seconds=1))
    async def tick() -> None: ...

    async with run_pool(queue):
        await wait_for(lambda: bool(_records(caplog, "for tick")), 5, "a tick to fire")
    ticks = _records(caplog, "for tick")
    assert ticks and all(r.levelno == logging.DEBUG for r in ticks)
    assert "enqueued job" in ticks[0].getMessage()
    [declared] = _records(caplog, "schedule 'log.tick' on queue")[:1]
    assert declared.levelno == logging.INFO  # once per start: "next run ..."


async def test_shutdown_names_the_jobs_it_waits_for_and_the_threads_it_cannot_stop(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiotaskq")
    release = threading.Event()
    started = threading.Event()

    @queue.task(name="log.stubborn")
    def stubborn() -> str:
        started.set()
        release.wait(10)  # ignores cancellation, as a plain function must
        return "done"

    @queue.task(name="log.polite")
    async def polite() -> None:
        await anyio.sleep(30)

    job = await stubborn.enqueue()
    other = await polite.enqueue()
    try:
        async with run_pool(queue, shutdown_timeout=0.2):
            await wait_for(started.is_set, 5, "the plain function to start")
            await wait_status(queue, other.id, JobStatus.ACTIVE)
        stopping = _records(caplog, "pool stopping")[0].getMessage()
        assert "waiting up to 0.2s for 2 running job(s): " in stopping
        assert f"{job.id} (log.stubborn, a plain function)" in stopping and f"{other.id} (log.polite)" in stopping
        [timeout] = _records(caplog, "shutdown timeout")
        assert timeout.levelno == logging.WARNING
        assert "cancelling 2 job(s) and handing them back" in timeout.getMessage()
        [thread] = _records(caplog, "its thread cannot be interrupted")
        assert thread.levelno == logging.WARNING
        assert thread.getMessage().startswith(f"job {job.id} (log.stubborn) is a plain function")
        assert _records(caplog, "(log.polite) is a plain function") == []
        assert await job.status() is JobStatus.QUEUED  # handed back, uncharged
    finally:
        release.set()


async def test_a_final_failure_is_logged_even_when_logging_is_not_configured(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """With Python's default WARNING threshold, a failure for good still shows; a retry does not."""
    caplog.set_level(logging.WARNING, logger="aiotaskq")

    @queue.task(name="log.once", retries=1, backoff=lambda attempt: 0.0)
    async def once() -> None:
        raise RuntimeError("nope")

    job = await once.enqueue()
    async with run_pool(queue):
        with pytest.raises(JobFailed):
            await job.result(timeout=5)
        await wait_for(lambda: bool(_records(caplog, job.id)), 5, "the failure to be logged")
    [rec] = _records(caplog, job.id)
    assert rec.levelno == logging.ERROR and "attempt 2 of 2 failed, out of retries" in rec.getMessage()
