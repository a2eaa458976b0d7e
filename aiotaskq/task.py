"""Tasks: functions registered on a queue, and how to enqueue them."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ._limits import check_keep, check_seconds
from .retry import Backoff, BackoffFn, as_backoff

if TYPE_CHECKING:
    from .cron import Rule
    from .job import Job
    from .queue import Queue

P = ParamSpec("P")
Q = ParamSpec("Q")
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
    expires: float | timedelta | None = None  # seconds after its due time by which it must start
    key: str | None = None  # the concurrency key (a task declared with key_concurrency)
    after: tuple[str, ...] | None = None  # ids of the parents it waits for (given as Jobs or ids)


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
        rate_limit: str | None = None,
        key_concurrency: int | None = None,
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
        self.rate_limit = parse_rate_limit(rate_limit)  # (starts, per ms) or None
        self.key_concurrency = validate_key_concurrency(key_concurrency)  # at most K running per key
        if "\0" in name and (rate_limit or key_concurrency):  # NUL separates a key's gate (see _lib.lua)
            raise ValueError(f"name: a rate-limited or keyed task's name may not contain NUL, got {name!r}")
        self.overlap = True  # False: a tick is skipped while the previous one's job is pending
        self.run_at_startup = False  # True: each pool start also runs it once (deduplicated while pending)
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
        """Options for the next enqueue: delay, at, priority, job_id, retries, timeout, expires
        (seconds or a timedelta after its due time: a job not started by then ends cancelled),
        key (a task declared with ``key_concurrency``: at most that many of its jobs with one
        key run at once), after (jobs or job ids of this queue: the job runs once every one of
        them succeeded, and fails with DependencyFailed when one fails or is cancelled)."""
        return BoundTask(self, _checked(self, EnqueueOptions(**options)))

    # Typed like enqueue; the last two forms leave out the first parameter, which a group's
    # callback receives from the group (its members' results): ``then=total.call()``.
    @overload
    def call(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Call[T]: ...
    @overload
    def call(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> Call[T]: ...
    @overload
    def call(self: Task[Concatenate[Any, Q], Coroutine[Any, Any, T]], *args: Q.args, **kwargs: Q.kwargs) -> Call[T]: ...
    @overload
    def call(self: Task[Concatenate[Any, Q], T], *args: Q.args, **kwargs: Q.kwargs) -> Call[T]: ...
    def call(self, *args: Any, **kwargs: Any) -> Call[Any]:
        """A run of the task not enqueued yet, typed like ``enqueue``: a member or the callback
        of ``queue.group`` (a callback's call leaves out its first argument, the results)."""
        return Call(self, args, kwargs, EnqueueOptions())

    # The job's result type T: what the function returns, awaited for a coroutine function.
    @overload
    async def enqueue(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    @overload
    async def enqueue(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    async def enqueue(self, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue one run with the task's defaults: a ``Job`` of the function's result type."""
        return await self.queue._enqueue_plain(self, args, kwargs)

    @overload
    def enqueue_sync(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    @overload
    def enqueue_sync(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> Job[T]: ...
    def enqueue_sync(self, *args: Any, **kwargs: Any) -> Job[Any]:
        """``enqueue`` for code without an event loop (a Django or Flask view, a script, a
        thread): blocking, thread-safe, the same script (docs/sync.md)."""
        job = self.queue._enqueue_one_sync(self.name, self, args, kwargs, EnqueueOptions())
        assert job is not None  # a generated id is never deduplicated
        return job

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

    @overload
    def enqueue_many_sync(
        self: Task[P, Coroutine[Any, Any, T]], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    @overload
    def enqueue_many_sync(
        self: Task[P, T], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    def enqueue_many_sync(self, calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[Job[Any] | None]:
        """``enqueue_many`` without an event loop (blocking, thread-safe; docs/sync.md)."""
        return BoundTask(self, EnqueueOptions()).enqueue_many_sync(calls)


class BoundTask(Generic[P, R]):
    """A task with options for the next enqueue (``task.options(...)``)."""

    def __init__(self, task: Task[P, R], options: EnqueueOptions) -> None:
        self.task = task
        self._options = options

    def options(self, **options: Any) -> BoundTask[P, R]:
        return BoundTask(self.task, _checked(self.task, replace(self._options, **options)))

    @overload
    def call(self: BoundTask[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Call[T]: ...
    @overload
    def call(self: BoundTask[P, T], *args: P.args, **kwargs: P.kwargs) -> Call[T]: ...
    @overload
    def call(
        self: BoundTask[Concatenate[Any, Q], Coroutine[Any, Any, T]], *args: Q.args, **kwargs: Q.kwargs
    ) -> Call[T]: ...
    @overload
    def call(self: BoundTask[Concatenate[Any, Q], T], *args: Q.args, **kwargs: Q.kwargs) -> Call[T]: ...
    def call(self, *args: Any, **kwargs: Any) -> Call[Any]:
        """A run with these options, not enqueued yet: for ``queue.group``."""
        return Call(self.task, args, kwargs, self._options)

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
    def enqueue_sync(
        self: BoundTask[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> Job[T] | None: ...
    @overload
    def enqueue_sync(self: BoundTask[P, T], *args: P.args, **kwargs: P.kwargs) -> Job[T] | None: ...
    def enqueue_sync(self, *args: Any, **kwargs: Any) -> Job[Any] | None:
        """``enqueue`` without an event loop (blocking, thread-safe; docs/sync.md)."""
        return self.task.queue._enqueue_one_sync(self.task.name, self.task, args, kwargs, self._options)

    @overload
    async def enqueue_many(
        self: BoundTask[P, Coroutine[Any, Any, T]], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    @overload
    async def enqueue_many(
        self: BoundTask[P, T], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    async def enqueue_many(self, calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[Job[Any] | None]:
        return await self.task.queue._enqueue_many(self.task, _items(calls), self._options)

    @overload
    def enqueue_many_sync(
        self: BoundTask[P, Coroutine[Any, Any, T]], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    @overload
    def enqueue_many_sync(
        self: BoundTask[P, T], calls: Iterable[Iterable[Any] | Mapping[str, Any]]
    ) -> list[Job[T] | None]: ...
    def enqueue_many_sync(self, calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[Job[Any] | None]:
        """``enqueue_many`` without an event loop (blocking, thread-safe; docs/sync.md)."""
        return self.task.queue._enqueue_many_sync(self.task, _items(calls), self._options)


def _items(calls: Iterable[Iterable[Any] | Mapping[str, Any]]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """enqueue_many's calls as (args, kwargs): a tuple of positional arguments or a mapping of keywords."""
    return [((), dict(call)) if isinstance(call, Mapping) else (tuple(call), {}) for call in calls]


class Call(Generic[R]):
    """A task, its arguments and options, not enqueued yet (``task.call(...)``): a member or the
    callback of ``queue.group``. ``R`` is the result type of the job it becomes."""

    __slots__ = ("args", "kwargs", "options", "task")

    def __init__(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 options: EnqueueOptions) -> None:  # fmt: skip
        self.task, self.args, self.kwargs, self.options = task, args, kwargs, options

    def __repr__(self) -> str:
        return f"<Call {self.task.name!r} args={self.args!r} kwargs={self.kwargs!r}>"


def _checked(task: Task[Any, Any], o: EnqueueOptions) -> EnqueueOptions:
    """Options that need the task, checked when given."""
    if o.after is not None:
        o = replace(o, after=parent_ids(task.queue, o.after))
    if o.key is not None:
        validate_key(o.key)
        if task.key_concurrency is None:
            raise ValueError(f"key: task {task.name!r} was declared without key_concurrency, so a key limits "
                             "nothing; declare @queue.task(key_concurrency=K)")  # fmt: skip
    return o


def parent_ids(queue: Queue, after: Any) -> tuple[str, ...] | None:
    """The ids of ``after`` (jobs or ids of ``queue``), each once, in order; None for none."""
    from .job import Job  # (job imports this module)

    if isinstance(after, (str, bytes, Job)) or not isinstance(after, Iterable):
        raise ValueError(f"after: must be a list of jobs or job ids, got {after!r}")
    ids: dict[str, None] = {}
    for p in after:
        if isinstance(p, Job):
            if p.queue.name != queue.name:
                raise ValueError(f"after: job {p.id!r} belongs to queue {p.queue.name!r}; a job's parents must be "
                                 f"in its own queue ({queue.name!r}): one hash slot, one script")  # fmt: skip
            p = p.id
        if not isinstance(p, str) or not p:
            raise ValueError(f"after: each parent must be a Job or a non-empty job id string, got {p!r}")
        ids[p] = None
    return tuple(ids) or None


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key: must be a non-empty string, got {key!r}")
    return key


def validate_key_concurrency(k: int | None) -> int | None:
    if k is None:
        return None
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1_000_000:
        raise ValueError(f"key_concurrency: must be an int from 1 to 1000000, got {k!r}")
    return k


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


_PERIODS = {"s": 1000, "m": 60_000, "h": 3_600_000}


def parse_rate_limit(spec: str | None) -> tuple[int, int] | None:
    """``"100/s"``, ``"30/m"``, ``"1000/h"``: (starts, period ms); None for no limit."""
    if spec is None:
        return None
    n, _, unit = spec.partition("/") if isinstance(spec, str) else ("", "", "")
    if not n.strip().isdigit() or int(n) <= 0 or unit.strip() not in _PERIODS:
        raise ValueError(f"rate_limit: expected 'N/s', 'N/m' or 'N/h' with N > 0 (starts per second, minute or "
                         f"hour), got {spec!r}")  # fmt: skip
    return int(n), _PERIODS[unit.strip()]
