"""Exceptions of the public API."""

from __future__ import annotations

from ._limits import check_seconds


class AiotaskqError(Exception):
    """Base class of the errors aiotaskq raises."""


class Retry(Exception):
    """Raise inside a task to run it again later.

    The attempt counts against the task's retries; ``delay`` (seconds) overrides
    the task's backoff for this retry.
    """

    def __init__(self, delay: float | None = None) -> None:
        if delay is not None:
            delay = check_seconds("delay", delay, zero=True)
        super().__init__(delay)
        self.delay = delay


class JobFailed(AiotaskqError):
    """The job ended ``failed``: ``error`` is the last error, ``traceback`` its trace."""

    def __init__(self, job_id: str, error: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelled(AiotaskqError):
    """The job ended ``cancelled``."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class JobNotFound(AiotaskqError, LookupError):
    """No job with this id exists (never enqueued, purged, or its result expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class CorruptResult(AiotaskqError, ValueError):
    """The job's stored result cannot be decoded (its hash was edited by hand, or written
    by something other than aiotaskq): ``reason`` says what the decoder found."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id}: the stored result cannot be decoded: {reason}")
        self.job_id = job_id
        self.reason = reason
