"""The job model: statuses, the ``JobInfo`` struct, and the msgpack codecs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import JobCancelled, JobFailed, JobNotFound

if TYPE_CHECKING:
    from .queue import Queue


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


# Encoders and decoders are built once (msgspec's performance advice).
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_payload_decoder = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])


def encode_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Encode task arguments; raises TypeError for what msgpack cannot hold."""
    try:
        return _encoder.encode((args, kwargs))
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise TypeError(f"task arguments cannot be encoded with msgpack: {exc}") from exc


def decode_payload(payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Decode task arguments; raises msgspec.DecodeError/ValidationError when corrupt."""
    try:
        return _payload_decoder.decode(payload)
    except (UnicodeDecodeError, RecursionError) as exc:  # msgspec lets these through on corrupt input
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


def encode_result(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_result(data: bytes) -> Any:
    try:
        return _decoder.decode(data) if data else None
    except (UnicodeDecodeError, RecursionError) as exc:  # as in decode_payload
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


def _ms_to_dt(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw is not None else None


def info_from_hash(job_id: str, h: dict[bytes, bytes]) -> JobInfo:
    """Build a JobInfo from the fields of a job hash."""
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
    )


def _progress(raw: bytes | None) -> float | None:
    """A stored progress, or None when unset or unreadable (a hash edited by hand)."""
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 1 else None


class Job:
    """A handle on one job of a queue, by id. Cheap: it holds no state."""

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

    async def status(self) -> JobStatus:
        """The job's current status; raises JobNotFound when there is no such job."""
        raw: bytes | None = await self.queue.redis.hget(self.queue.keys.job(self.id), "status")  # type: ignore[assignment]
        if raw is None:
            raise JobNotFound(self.id)
        return JobStatus(raw.decode())

    async def info(self) -> JobInfo:
        """Everything stored about the job; raises JobNotFound when there is no such job."""
        h: dict[bytes, bytes] = await self.queue.redis.hgetall(self.queue.keys.job(self.id))  # type: ignore[assignment]
        if not h or b"status" not in h:
            raise JobNotFound(self.id)
        if b"retries" not in h:  # not claimed yet: the task's default applies
            task = self.queue.tasks.get(h.get(b"task", b"").decode("utf-8", "replace"))
            if task is not None:
                h[b"retries"] = str(task.retries).encode()
        return info_from_hash(self.id, h)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result.

        Raises JobFailed, JobCancelled, JobNotFound, or TimeoutError after
        ``timeout`` seconds. Waits on a pub/sub message, not by polling: it
        subscribes first, then reads the status, then waits, so an end that
        happens in between is not missed.
        """
        channel = self.queue.keys.done(self.id)
        wake = _Wakeup()
        listener = self.queue._listener_for_waiters()
        with anyio.fail_after(timeout):
            await listener.subscribe(channel, wake)
            try:
                while True:
                    try:
                        done, value = await self._outcome()
                    except (RedisConnectionError, RedisTimeoutError):
                        await anyio.sleep(0.2)  # Redis is away: keep waiting, within the timeout
                        continue
                    if done:
                        return value
                    await wake.wait(_SAFETY_POLL)
            finally:
                with anyio.CancelScope(shield=True):
                    await listener.unsubscribe(channel, wake)

    async def _outcome(self) -> tuple[bool, Any]:
        key = self.queue.keys.job(self.id)
        fields: list[bytes | None] = await self.queue.redis.hmget(key, "status", "result", "error", "tb")  # type: ignore[assignment]
        status, result, error, tb = fields
        if status is None:
            raise JobNotFound(self.id)
        if status == b"succeeded":
            return True, decode_result(result or b"")
        if status == b"failed":
            raise JobFailed(self.id, _text(error) or "unknown error", _text(tb) or "")
        if status == b"cancelled":
            raise JobCancelled(self.id)
        return False, None

    async def cancel(self) -> bool:
        """Cancel the job. A scheduled or queued job is removed at once; a running
        one is stopped by its pool (across processes) and ends ``cancelled``.
        Returns False when the job is missing or already ended."""
        return await self.queue.scripts.cancel(self.id, self.queue._keep_ms(None)) > 0

    async def reschedule(self, *, at: datetime | None = None, delay: float | timedelta | None = None) -> bool:
        """Move a scheduled, queued, failed or cancelled job to ``scheduled`` at a new
        time (now when neither is given). Returns False for a missing, running or
        succeeded job. A failed or cancelled job starts over with fresh retries."""
        delay_s, at_ms = due_time(delay, at)
        return await self.queue.scripts.reschedule(self.id, delay=delay_s, at_ms=at_ms) > 0


# A missed message (connection lost at the wrong moment) costs at most this wait.
_SAFETY_POLL = 5.0


class _Wakeup:
    """A resettable event for callbacks from the pub/sub listener."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def __call__(self, data: bytes | None) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()


def due_time(delay: float | timedelta | None, at: datetime | None) -> tuple[float | None, int | None]:
    """Validate ``delay``/``at``: (delay seconds, due epoch ms)."""
    if delay is not None and at is not None:
        raise ValueError("delay, at: give one or the other, not both")
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        if not isinstance(delay, int | float) or isinstance(delay, bool) or delay != delay:
            raise ValueError(f"delay: must be a number of seconds or a timedelta, got {delay!r}")
        if delay < 0:
            raise ValueError(f"delay: must be >= 0, got {delay!r}")
        return float(delay), None
    if at is not None:
        if not isinstance(at, datetime):
            raise ValueError(f"at: must be a datetime, got {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at: must be timezone-aware (a naive datetime is ambiguous)")
        return None, round(at.timestamp() * 1000)
    return None, None
