"""The running job's context: ``current_job()`` inside a task or a job hook.

The pool sets one context variable per attempt (a small object, no Redis call);
coroutine tasks see it directly and plain-function tasks in their worker thread
(anyio copies the context into the thread). Everything a task may want to know
about its job comes from the claim: only ``progress()`` talks to Redis.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final

import anyio.from_thread

if TYPE_CHECKING:
    from ._executor import Claimed, Executor

#: The longest progress note ``progress()`` accepts, in characters.
MAX_NOTE: Final = 1000

_current: ContextVar[JobContext] = ContextVar("aiotaskq.current_job")


def current_job() -> JobContext:
    """The context of the job being run: call it inside a task (coroutine or plain
    function) or a ``before_job``/``after_job`` hook. Raises LookupError elsewhere."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job(): no aiotaskq job is running here (call it inside a task)") from None


class JobContext:
    """One attempt of a job, as the task running it sees it.

    ``id``, ``attempt`` (1 on the first run), ``max_retries``, ``queue`` (its name),
    ``task`` (the registered name), ``enqueued_at``, ``state`` (the pool's namespace
    for resources its startup hooks create), and ``progress()`` to report progress.
    """

    __slots__ = ("_error", "_executor", "_job", "_result")

    def __init__(self, job: Claimed, executor: Executor) -> None:
        self._job = job
        self._executor = executor
        self._result: Any = None  # what the attempt returned or raised, for after_job
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<JobContext {self.id!r} ({self.task}) attempt {self.attempt} on queue {self.queue!r}>"

    @property
    def id(self) -> str:
        """The job's id."""
        return self._job.id

    @property
    def attempt(self) -> int:
        """Which start of the job this is: 1 on the first run, 2 on the first retry."""
        return self._job.attempt

    @property
    def max_retries(self) -> int:
        """How many retries the job allows after failed attempts."""
        return self._job.retries

    @property
    def task(self) -> str:
        """The task's registered name."""
        return self._job.task

    @property
    def queue(self) -> str:
        """The name of the job's queue."""
        return self._executor.queue_name

    @property
    def enqueued_at(self) -> datetime | None:
        """When the job was enqueued (Redis server time); None for a job stored without
        one (written by hand, or by an older aiotaskq)."""
        raw = self._job.enqueued_ms
        try:
            return datetime.fromtimestamp(int(raw) / 1000, tz=UTC) if raw else None
        except (ValueError, OverflowError, OSError):
            return None

    @property
    def state(self) -> SimpleNamespace:
        """The pool's ``state``: a namespace where ``on_startup`` hooks keep resources
        (an HTTP client, a database pool) for tasks to use."""
        return self._executor.state

    async def progress(self, value: float, note: str | None = None) -> bool:
        """Store the job's progress, ``value`` from 0 to 1, with an optional ``note``
        (at most MAX_NOTE characters; None removes the previous one). ``JobInfo.progress``
        and ``JobInfo.progress_note`` show it. One Redis call; returns False when this
        attempt no longer owns the job (it was cancelled, or its pool declared dead), so
        nothing was written."""
        value = validate_progress(value, note)
        job = self._job
        code = await self._executor.scripts.progress(job.id, job.pool_id, job.attempt, value, note)
        return code == 1

    def progress_sync(self, value: float, note: str | None = None) -> bool:
        """``progress()`` for a plain-function task, from its worker thread."""
        validate_progress(value, note)
        return anyio.from_thread.run(self.progress, value, note)


def validate_progress(value: float, note: str | None) -> float:
    """Check a progress report; ValueError naming the parameter."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"value: progress must be a number from 0 to 1, got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"value: progress must be from 0 to 1, got {value!r}")
    if note is not None:
        if not isinstance(note, str):
            raise ValueError(f"note: must be a str or None, got {type(note).__name__}")
        if len(note) > MAX_NOTE:
            raise ValueError(f"note: at most {MAX_NOTE} characters, got {len(note)}")
    return float(value)
