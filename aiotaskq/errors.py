"""Exceptions of the public API."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from ._limits import check_seconds


class AiotaskqError(Exception):
    """Base class of the errors aiotaskq raises."""


class PayloadTooLarge(ValueError):
    """The encoded arguments are larger than the queue's ``max_payload_bytes``."""


class Retry(Exception):
    """Raise inside a task to run it again later.

    The attempt counts against the task's retries. ``delay`` (seconds, or a
    ``timedelta``) or ``at`` (a timezone-aware ``datetime``) overrides the task's
    backoff for this retry; give one or neither. A time in the past means "now".
    """

    def __init__(self, delay: float | timedelta | None = None, *, at: datetime | None = None) -> None:
        if delay is not None and at is not None:
            raise ValueError("delay, at: give one or the other, not both")
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        if delay is not None:
            delay = check_seconds("delay", delay, zero=True)
        if at is not None and (not isinstance(at, datetime) or at.utcoffset() is None):
            raise ValueError(f"at: must be a timezone-aware datetime (a naive one is ambiguous), got {at!r}")
        super().__init__(delay if at is None else at)
        self.delay: float | None = delay
        self.at = at

    def seconds_from_now(self) -> float | None:
        """The wait this retry asks for, in seconds from now (None: the task's backoff)."""
        if self.at is not None:
            return max(0.0, self.at.timestamp() - time.time())
        return self.delay


class JobFailed(AiotaskqError):
    """The job ended ``failed``: ``error`` is the last error, ``traceback`` its trace."""

    def __init__(self, job_id: str, error: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class DependencyFailed(JobFailed):
    """The job never ran: a parent it waited for (``options(after=...)``, or a member of its
    group) ended failed or cancelled, or was purged. ``parent`` is that parent's id."""

    PREFIX = "DependencyFailed: parent "

    def __init__(self, job_id: str, error: str, traceback: str = "") -> None:
        super().__init__(job_id, error, traceback)
        rest = error.removeprefix(self.PREFIX)
        purged = rest.endswith(" was purged")
        self.parent = rest.removesuffix(" was purged") if purged else rest.rpartition(" ended ")[0]


def job_failed(job_id: str, error: str, traceback: str = "") -> JobFailed:
    """The error a ``result()`` of a failed job raises: DependencyFailed when a parent failed it."""
    if error.startswith(DependencyFailed.PREFIX):
        return DependencyFailed(job_id, error, traceback)
    return JobFailed(job_id, error, traceback)


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


class StorageLayoutError(AiotaskqError):
    """The queue holds jobs stored by an earlier aiotaskq, in a layout this version does not
    read: a pool refuses to serve it rather than skip those jobs."""
