"""Tasks: functions registered on a queue, and how to enqueue them."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from ._limits import check_keep, check_seconds
from .retry import Backoff, BackoffFn, as_backoff

if TYPE_CHECKING:
    from .cron import Rule
    from .job import Job
    from .queue import Queue

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-call options; None means "the task's default"."""

    delay: float | timedelta | None = None
    at: datetime | None = None
    priority: int | None = None
    job_id: str | None = None
    retries: int | None = None
    timeout: float | None = None


class Task(Generic[P, R]):
    """A function registered on a queue under ``name``.

    Calling the task runs the function directly; ``enqueue`` stores a job that a
    pool will run.
    """

    def __init__(
        self,
        queue: Queue,
        fn: Callable[P, R],
        *,
        name: str,
        retries: int,
        timeout: float | None,
        priority: int,
        backoff: Backoff | BackoffFn | tuple[float, float] | None,
        keep_result: float | None,
    ) -> None:
        validate_retries(retries)
        validate_timeout(timeout)
        validate_priority(priority)
        if keep_result is not None:
            keep_result = check_keep("keep_result", keep_result)
        if not name:
            raise ValueError("name: a task name must be a non-empty string")
        self.queue = queue
        self.fn = fn
        self.name = name
        self.retries = retries
        self.timeout = timeout
        self.priority = priority
        self.backoff: BackoffFn = as_backoff(backoff)
        self.keep_result = keep_result
        self.recurring: Rule | None = None  # set by @queue.task(cron=...) or (every=...)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @functools.cached_property
    def _result_type(self) -> Any:
        """The function's return annotation (``Any`` when missing or unresolvable):
        ``result()`` converts the stored value to it."""
        try:
            hint = typing.get_type_hints(self.fn).get("return", Any)
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: no conversion
            return Any
        return Any if hint is type(None) else hint

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} on queue {self.queue.name!r}>"

    def options(self, **options: Any) -> BoundTask[P, R]:
        """Options for the next enqueue: delay, at, priority, job_id, retries, timeout."""
        return BoundTask(self, EnqueueOptions(**options))

    # The job's result type T: what the function returns, awaited for a coroutine function.
    @overload
    async def enqueue(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    @overload
    async def enqueue(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    async def enqueue(self, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue one run with the task's defaults: a ``Job`` of the function's result type."""
        return await self.queue._enqueue_plain(self, args, kwargs)

    @overload
    async def enqueue_many(
        self: Task[P, Coroutine[Any, Any, T]], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    @overload
    async def enqueue_many(
        self: Task[P, T], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    async def enqueue_many(self, calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[Job[Any] | None]:
        """Enqueue many runs in one pipelined round trip: each item is a tuple of
        positional arguments or a mapping of keyword arguments."""
        return await BoundTask(self, EnqueueOptions()).enqueue_many(calls)


class BoundTask(Generic[P, R]):
    """A task with options for the next enqueue (``task.options(...)``)."""

    def __init__(self, task: Task[P, R], options: EnqueueOptions) -> None:
        self.task = task
        self._options = options

    def options(self, **options: Any) -> BoundTask[P, R]:
        return BoundTask(self.task, replace(self._options, **options))

    @overload
    async def enqueue(
        self: BoundTask[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Job[T] | None: ...
    @overload
    async def enqueue(self: BoundTask[P, T], *args: P.args, **kwargs: P.kwargs) -> Job[T] | None: ...
    async def enqueue(self, *args: Any, **kwargs: Any) -> Job[Any] | None:
        """Enqueue one run; None when ``job_id`` names a job that is still pending."""
        return await self.task.queue._enqueue_task(self.task, args, kwargs, self._options)

    @overload
    async def enqueue_many(
        self: BoundTask[P, Coroutine[Any, Any, T]], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    @overload
    async def enqueue_many(
        self: BoundTask[P, T], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    async def enqueue_many(self, calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[Job[Any] | None]:
        items: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for call in calls:
            if isinstance(call, Mapping):
                items.append(((), dict(call)))
            else:
                items.append((tuple(call), {}))
        return await self.task.queue._enqueue_many(self.task, items, self._options)


def validate_priority(priority: int) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"priority: must be an int, got {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority: must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {priority}")
    return priority


def validate_retries(retries: int) -> int:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries: must be an int >= 0, got {retries!r}")
    return retries


def validate_timeout(timeout: float | None) -> float | None:
    """None (no timeout) or a finite number of seconds > 0, at most 100 years."""
    return None if timeout is None else check_seconds("timeout", timeout, zero=False)
