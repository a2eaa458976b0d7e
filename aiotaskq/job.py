"""The job model: statuses, the ``JobInfo`` struct, and the msgpack codecs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Generic, cast

import anyio
import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._limits import MAX_SECONDS, check_seconds
from ._record import fields as job_fields
from ._record import parents
from ._sync import sync_client
from .errors import CorruptResult, JobCancelled, JobFailed, JobNotFound, job_failed

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from ._listener import Listener
    from .queue import Queue
    from .task import Task

    R = TypeVar("R", default=Any)  # a bare ``Job`` is ``Job[Any]``
else:
    from typing import TypeVar

    R = TypeVar("R")


class JobStatus(str, Enum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"  # waiting for its time (delay, retry backoff, recurring tick)
    QUEUED = "queued"  # due, waiting for a worker
    ACTIVE = "active"  # claimed by a pool, running
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # out of retries; kept until purged or requeued
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one job, as stored in Redis."""

    id: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    status: JobStatus
    priority: int
    attempts: int
    max_retries: int
    enqueued_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None  # seconds of the last attempt
    result: Any
    error: str | None
    traceback: str | None
    pool_id: str | None
    progress: float | None = None  # 0..1, as the task last reported it (current_job().progress)
    progress_note: str | None = None
    key: str | None = None  # its concurrency key (options(key=...))
    after: tuple[str, ...] = ()  # the ids of its parents (options(after=...), or a group's members)


# Encoders and decoders are built once (msgspec's performance advice).
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_payload_decoder = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])
# A payload may carry a third element, a str -> str map of what travels with the job besides
# its arguments (the trace context: aiotaskq/tracing.py); msgpack opens it with 0x93.
_meta_decoder = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any], dict[str, str]])
_WITH_META = b"\x93"


def encode_payload(args: tuple[Any, ...], kwargs: dict[str, Any], meta: dict[str, str] | None = None) -> bytes:
    """Encode task arguments (and ``meta``, see above); raises TypeError for what msgpack cannot hold."""
    try:
        return _encoder.encode((args, kwargs) if not meta else (args, kwargs, meta))
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise TypeError(f"task arguments cannot be encoded with msgpack: {exc}") from exc


def decode_payload(payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Decode task arguments; raises msgspec.DecodeError/ValidationError when corrupt."""
    try:
        if payload[:1] == _WITH_META:
            args, kwargs, _ = _meta_decoder.decode(payload)
            return args, kwargs
        return _payload_decoder.decode(payload)
    except (UnicodeDecodeError, RecursionError) as exc:  # msgspec lets these through on corrupt input
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


def payload_meta(payload: bytes) -> dict[str, str]:
    """What travels with the job besides its arguments ({} for none, or for a corrupt payload)."""
    if payload[:1] != _WITH_META:
        return {}
    try:
        return _meta_decoder.decode(payload)[2]
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return {}


def encode_result(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_result(data: bytes) -> Any:
    try:
        return _decoder.decode(data) if data else None
    except (UnicodeDecodeError, RecursionError) as exc:  # as in decode_payload
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


# One decoder per return type, built on first use (None: the type has no msgspec decoder).
_typed_decoders: dict[Any, msgspec.msgpack.Decoder[Any] | None] = {}


def _typed_decoder(tp: Any) -> msgspec.msgpack.Decoder[Any] | None:
    try:
        return _typed_decoders[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build it each time
        return _build_decoder(tp)
    decoder = _typed_decoders[tp] = _build_decoder(tp)
    return decoder


def _build_decoder(tp: Any) -> msgspec.msgpack.Decoder[Any] | None:
    try:
        return msgspec.msgpack.Decoder(tp)
    except TypeError:  # not a type msgspec can decode to (a plain class, a Protocol...)
        return None


def decode_typed_result(job_id: str, data: bytes, tp: Any = Any) -> Any:
    """A stored result, converted to the task's return type ``tp`` as arguments are
    (a Struct, a dataclass, Decimal, UUID, tuple, set...). A value that does not fit
    the annotation comes back as decoded. Raises CorruptResult when it cannot be decoded."""
    if not data:
        return None
    decoder = None if tp is Any else _typed_decoder(tp)
    if decoder is not None:
        try:
            return decoder.decode(data)
        except msgspec.ValidationError:
            pass  # the task returned something else than it says: give it as it is
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # raised below, from the untyped decoder
    try:
        return decode_result(data)
    except msgspec.DecodeError as exc:
        raise CorruptResult(job_id, str(exc)) from None


def _ms_to_dt(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw is not None else None


def info_from_hash(job_id: str, h: dict[bytes, bytes]) -> JobInfo:
    """Build a JobInfo from the fields of a job record (see _record.py)."""
    try:
        args, kwargs = decode_payload(h.get(b"payload", b""))
    except (msgspec.DecodeError, msgspec.ValidationError):
        args, kwargs = [], {}
    try:
        result = decode_result(h.get(b"result", b""))
    except msgspec.DecodeError:
        result = None
    duration = h.get(b"duration")
    return JobInfo(
        id=job_id,
        task=_text(h.get(b"task")) or "",
        args=tuple(args),
        kwargs=kwargs,
        status=JobStatus(h[b"status"].decode()),
        priority=int(h.get(b"prio", 0)),
        attempts=int(h.get(b"attempts", 0)),
        max_retries=int(h.get(b"retries") or 0),  # absent until claimed when the task's default applies
        enqueued_at=_ms_to_dt(h.get(b"enq_at")),
        scheduled_at=_ms_to_dt(h.get(b"due_at") or h.get(b"enq_at")),
        started_at=_ms_to_dt(h.get(b"start_at")),
        finished_at=_ms_to_dt(h.get(b"end_at")),
        duration=int(duration) / 1000 if duration is not None else None,
        result=result,
        error=_text(h.get(b"error")) or None,
        traceback=_text(h.get(b"tb")) or None,
        pool_id=_text(h.get(b"pool")),
        progress=_progress(h.get(b"progress")),
        progress_note=_text(h.get(b"progress_note")),
        key=_text(h.get(b"key")),
        after=tuple(p.decode("utf-8", "replace") for p in parents(h.get(b"after", b""))),
    )


def _progress(raw: bytes | None) -> float | None:
    """A stored progress, or None when unset or unreadable (a hash edited by hand)."""
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 1 else None


class Job(Generic[R]):
    """A handle on one job of a queue, by id. Cheap: it holds no state.

    ``Job[R]``: ``result()`` gives the task's return type. ``Task[P, R].enqueue`` gives a
    ``Job[R]``; ``queue.job(id)`` and ``queue.enqueue(name, ...)`` give a ``Job[Any]``. In
    every case the value is converted to the return annotation of the task registered under
    the job's task name on this ``Queue``, when there is one.
    """

    __slots__ = ("id", "queue")

    def __init__(self, queue: Queue, job_id: str) -> None:
        self.queue = queue
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id!r} on queue {self.queue.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.queue is self.queue

    def __hash__(self) -> int:
        return hash(self.id)

    async def _fields(self) -> dict[bytes, bytes] | None:
        """The job's fields (see _record.py), or None when there is no such job: its record,
        active entry and ended record, read together (one MULTI)."""
        q = self.queue._shard_of(self.id)
        k = q.keys
        async with q.redis.pipeline(transaction=True) as pipe:
            pipe.hget(k.jobs, self.id)
            pipe.hget(k.active, self.id)
            pipe.get(k.job(self.id))
            pending, running, done = await pipe.execute()
        return job_fields(pending, running, done)

    async def status(self) -> JobStatus:
        """The job's current status; raises JobNotFound when there is no such job."""
        return self._status_of(await self._fields())

    def _status_of(self, h: dict[bytes, bytes] | None) -> JobStatus:
        if h is None:
            raise JobNotFound(self.id)
        return JobStatus(h[b"status"].decode())

    async def info(self) -> JobInfo:
        """Everything stored about the job; raises JobNotFound when there is no such job."""
        return self._info_of(await self._fields())

    def _info_of(self, h: dict[bytes, bytes] | None) -> JobInfo:
        if h is None:
            raise JobNotFound(self.id)
        if b"retries" not in h:  # not claimed yet: the task's default applies
            task = self.queue.tasks.get(h.get(b"task", b"").decode("utf-8", "replace"))
            if task is not None:
                h[b"retries"] = str(task.retries).encode()
        return info_from_hash(self.id, h)

    # -- the same, blocking (aiotaskq/_sync.py): for code without an event loop ----------------

    def _fields_sync(self) -> dict[bytes, bytes] | None:
        k = self.queue._shard_of(self.id).keys
        return job_fields(*sync_client(self.queue).read(k.jobs, k.active, k.job(self.id), self.id))

    def status_sync(self) -> JobStatus:
        """``status()`` without an event loop (blocking; thread-safe)."""
        return self._status_of(self._fields_sync())

    def info_sync(self) -> JobInfo:
        """``info()`` without an event loop (blocking; thread-safe)."""
        return self._info_of(self._fields_sync())

    def result_sync(self, timeout: float | None = None) -> R:
        """``result()`` without an event loop: blocks until the job ended (TimeoutError after
        ``timeout`` seconds), subscribed to its end first, as ``result()`` is; raises as it does."""
        misses = 0

        def check(message: bytes | None) -> tuple[Any] | float:
            nonlocal misses
            if message is not None and b"\n" in message:  # an unkept job's outcome; else a wake-up
                return (self._from_message(message),)
            try:
                done, value = self._outcome_of(self._fields_sync())
            except JobNotFound:
                # Gone: never there, expired, or ended unkept after we subscribed, its message
                # maybe on its way: wait for it a little before believing it.
                misses += 1
                if misses > 2:
                    raise
                return 0.05
            return (value,) if done else 1.0

        channel = self.queue._shard_of(self.id).keys.done(self.id)
        return cast("R", sync_client(self.queue).wait_message(channel, check, timeout)[0])

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to end and return its result, converted to the task's
        return annotation (see the class).

        Raises JobFailed, JobCancelled, JobNotFound, CorruptResult, or TimeoutError
        after ``timeout`` seconds. Waits on a pub/sub message, not by polling: it
        subscribes first, then reads the status, then waits, so an end that happens
        in between is not missed. A job that is not kept (``keep_result=0``) sends
        its outcome in that message, so a waiter gets it although the job is gone.
        """
        shard = self.queue._shard_of(self.id)
        channel = shard.keys.done(self.id)
        wake = _Wakeup()
        listener = shard._listener_for_waiters()
        with anyio.fail_after(timeout):
            while True:
                try:
                    await listener.subscribe(channel, wake)
                    break
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    await anyio.sleep(0.2)  # Redis is away (or just back): keep trying, within the timeout
            try:
                return cast("R", await self._wait(listener, wake))
            finally:
                with anyio.CancelScope(shield=True):
                    await listener.unsubscribe(channel, wake)

    async def _wait(self, listener: Listener, wake: _Wakeup) -> Any:
        while True:
            if wake.ended is not None:
                return self._from_message(wake.ended)
            try:
                done, value = await self._outcome()
            except (RedisConnectionError, RedisTimeoutError):
                await anyio.sleep(0.2)  # Redis is away: keep waiting, within the timeout
                continue
            except JobNotFound:
                # Gone: never there, expired, or ended unkept after we subscribed, its message
                # maybe still on its way: the listener's sync() lets every message sent before it through.
                if wake.ended is None:
                    await listener.sync()
                if wake.ended is None:
                    raise
                continue
            if done:
                return value
            await wake.wait(_SAFETY_POLL)

    async def _outcome(self) -> tuple[bool, Any]:
        return self._outcome_of(await self._fields())

    def _outcome_of(self, h: dict[bytes, bytes] | None) -> tuple[bool, Any]:
        """(True, the result) for a job that succeeded, (False, None) for one not ended; raises
        for one that failed or was cancelled, JobNotFound for none."""
        if h is None:
            raise JobNotFound(self.id)
        status = h[b"status"]
        if status == b"succeeded":
            return True, decode_typed_result(self.id, h.get(b"result", b""), self._result_type(h.get(b"task")))
        if status == b"failed":
            raise job_failed(self.id, _text(h.get(b"error")) or "unknown error", _text(h.get(b"tb")) or "")
        if status == b"cancelled":
            raise JobCancelled(self.id)
        return False, None

    def _result_type(self, task_name: bytes | None) -> Any:
        task: Task[Any, Any] | None = self.queue.tasks.get(_text(task_name) or "")
        return Any if task is None else task._result_type

    def _from_message(self, message: bytes) -> Any:
        """The outcome a job that was not kept published (see close_job in _lib.lua):
        ``<status>\\n<length of the task name>\\n<task name><result>``."""
        status, _, rest = message.partition(b"\n")
        length, _, rest = rest.partition(b"\n")
        n = int(length) if length.isdigit() else 0
        if status == b"succeeded":
            return decode_typed_result(self.id, rest[n:], self._result_type(rest[:n]))
        if status == b"cancelled":
            raise JobCancelled(self.id)
        raise JobFailed(self.id, f"the job ended {_text(status)}, and was not kept")

    async def cancel(self) -> bool:
        """Cancel the job. A scheduled or queued job is removed at once; a running
        one is stopped by its pool (across processes) and ends ``cancelled``.
        Returns False when the job is missing or already ended. The job is kept for
        its task's ``keep_result`` (the value of the task registered on this queue,
        else the one the pools registered, else the queue's)."""
        q = self.queue._shard_of(self.id)
        known = [(name, q._keep_ms(task)) for name, task in q.tasks.items()]
        return await q.scripts.cancel(self.id, q._keep_ms(None), known) > 0

    async def reschedule(self, *, at: datetime | None = None, delay: float | timedelta | None = None) -> bool:
        """Move a scheduled, queued, failed or cancelled job to ``scheduled`` at a new
        time (now when neither is given). Returns False for a missing, running or
        succeeded job. A failed or cancelled job starts over with fresh retries."""
        delay_s, at_ms = due_time(delay, at)
        return await self.queue._shard_of(self.id).scripts.reschedule(self.id, delay=delay_s, at_ms=at_ms) > 0


# A missed message (connection lost at the wrong moment) costs at most this wait.
_SAFETY_POLL = 5.0


class _Wakeup:
    """A resettable event for callbacks from the pub/sub listener; ``ended`` holds the
    outcome an unkept job published (a message with a newline), once one came."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.ended: bytes | None = None

    def __call__(self, data: bytes | None) -> None:
        if data and b"\n" in data:
            self.ended = data
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()


def due_time(delay: float | timedelta | None, at: datetime | None) -> tuple[float | None, int | None]:
    """Validate ``delay``/``at``: (delay seconds, due epoch ms). Both are bounded to 100
    years ahead (``MAX_SECONDS``); a time in the past means now."""
    if delay is not None and at is not None:
        raise ValueError("delay, at: give one or the other, not both")
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        if not isinstance(delay, int | float) or isinstance(delay, bool):
            raise ValueError(f"delay: must be a number of seconds or a timedelta, got {delay!r}")
        return check_seconds("delay", delay, zero=True), None
    if at is not None:
        if not isinstance(at, datetime):
            raise ValueError(f"at: must be a datetime, got {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at: must be timezone-aware (a naive datetime is ambiguous)")
        try:
            ts = at.timestamp()
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"at: {at!r} cannot be a due time: {exc}") from None
        if ts - time.time() > MAX_SECONDS:
            raise ValueError(f"at: must be at most {MAX_SECONDS:.0f} seconds (100 years) from now, got {at!r}")
        return None, max(0, round(ts * 1000))  # before 1970 is in the past too: now
    return None, None


#: The payload meta entry of a group's callback: JSON {"members": [[id, task], ...], "errors": bool}.
GROUP_META: Final = "aiotaskq.group"


class Group(Generic[R]):
    """What ``queue.group`` enqueued: ``jobs``, the members in call order, and ``then``, the
    callback, which runs once after every member ended (``R``: the callback's result type)."""

    __slots__ = ("jobs", "then")

    def __init__(self, jobs: list[Job[Any]], then: Job[R]) -> None:
        self.jobs = jobs
        self.then = then

    async def result(self, timeout: float | None = None) -> R:
        """The callback's result (see ``Job.result``)."""
        return await self.then.result(timeout)

    def __repr__(self) -> str:
        return f"<Group of {len(self.jobs)} then {self.then.id!r}>"
