"""Recurring schedules stored in Redis: the ``ScheduleInfo`` struct and the runtime API
behind ``Queue.schedule``, ``Queue.unschedule`` and ``Queue.schedules``.

A schedule lives under the queue's hash tag: its spec (msgpack) in the
``schedules`` hash, its next run in the ``schedules:next`` zset, the tick of its
last job in the ``schedules:last`` hash. Pools fire it (``_scheduler.py``).
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .cron import Rule, make_rule, next_tick
from .errors import PayloadTooLarge
from .job import encode_payload
from .task import Task, validate_priority

if TYPE_CHECKING:
    from .queue import Queue

MAX_KEY_LENGTH: Final = 512


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One recurring schedule, as stored in Redis."""

    key: str
    task: str
    spec: str  # "cron '*/5 * * * *' (Europe/Berlin)" or "every 30s"
    cron: str | None
    every: timedelta | None
    tz: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    priority: int
    misfire: str
    start_at: datetime | None
    end_at: datetime | None
    next_run: datetime | None  # None once the schedule has ended (end_at passed)
    last_run: datetime | None  # the tick of the last job it enqueued
    last_job_id: str | None
    declared: bool  # declared in code with @queue.task(cron=...) or (every=...)
    overlap: bool = True  # False: a tick is skipped while the previous tick's job is pending


class Spec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What is stored per schedule (msgpack). Equal specs encode to equal bytes."""

    task: str
    payload: bytes  # msgpack [args, kwargs], as a job's
    priority: int = 0
    rule: Rule
    declared: bool = False
    overlap: bool = True  # False: skip a tick while the previous tick's job is still pending (tick.lua)


_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(Spec)
_payload_decoder = msgspec.msgpack.Decoder(tuple[list[Any], dict[str, Any]])


def encode_spec(spec: Spec) -> bytes:
    return _encoder.encode(spec)


def decode_spec(raw: bytes) -> Spec:
    """Raises msgspec.DecodeError or ValidationError for what this version cannot read."""
    return _spec_decoder.decode(raw)


def job_id(key: str, tick_ms: int) -> str:
    """The id of the job a schedule enqueues for one tick."""
    return f"schedule:{key}:{tick_ms}"


def build(
    queue: Queue,
    key: str,
    task: Task[Any, Any] | str,
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    args: Any = (),
    kwargs: dict[str, Any] | None = None,
    tz: str | None = None,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    priority: int | None = None,
    misfire: str | None = None,
    declared: bool = False,
    overlap: bool = True,
) -> Spec:
    """Validate a schedule (no Redis call): ValueError naming the bad argument, TypeError
    for arguments msgpack cannot hold."""
    validate_key(key)
    known = _resolve(queue, task)
    name = known.name if known is not None else task
    if not isinstance(name, str) or not name:
        raise ValueError("task: give a Task or a non-empty task name")
    rule = make_rule(cron=cron, every=every, tz=tz, start_at=start_at, end_at=end_at, misfire=misfire)
    args = tuple(args)
    kwargs = dict(kwargs or {})
    if known is not None:
        check_arguments(known, args, kwargs)
    prio = validate_priority(priority) if priority is not None else (known.priority if known is not None else 0)
    payload = encode_payload(args, kwargs)
    if len(payload) > queue.max_payload_bytes:
        raise PayloadTooLarge(f"args: the encoded arguments take {len(payload)} bytes, over max_payload_bytes="
                              f"{queue.max_payload_bytes}")  # fmt: skip
    if not isinstance(overlap, bool):
        raise ValueError(f"overlap: expected True or False, got {overlap!r}")
    return Spec(task=name, payload=payload, priority=prio, rule=rule, declared=declared, overlap=overlap)


def validate_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key: a schedule key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key: at most {MAX_KEY_LENGTH} characters, got {len(key)}")
    return key


def check_arguments(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Each tick calls the task with these arguments: they must fit its signature."""
    try:
        inspect.signature(task.fn).bind(*args, **kwargs)
    except TypeError as exc:
        what = "needs arguments" if not args and not kwargs else "cannot take these arguments"
        raise ValueError(f"args: task {task.name!r} {what} ({exc}); a schedule calls it with the args and "
                         "kwargs given") from None  # fmt: skip
    except ValueError:  # no signature to check (some builtins)
        pass


def task_rule(
    task: Task[Any, Any], *, cron: str | None, every: timedelta | float | None, tz: str | None, misfire: str | None
) -> Rule | None:
    """The schedule declared with ``@queue.task(cron=...)`` or ``(every=...)``, validated (None: not recurring)."""
    if cron is None and every is None:
        if tz is not None or misfire is not None:
            raise ValueError("tz, misfire: only apply to a recurring task (give cron= or every=)")
        return None
    rule = make_rule(cron=cron, every=every, tz=tz, misfire=misfire)
    check_arguments(task, (), {})
    return rule


def check_recurring_flags(rule: Rule | None, overlap: bool, run_at_startup: bool) -> tuple[bool, bool]:
    """``overlap`` and ``run_at_startup`` of ``@queue.task``: booleans, and only for a recurring task."""
    for name, value in (("overlap", overlap), ("run_at_startup", run_at_startup)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected True or False, got {value!r}")
    if rule is None and (not overlap or run_at_startup):
        raise ValueError("overlap, run_at_startup: only apply to a recurring task (give cron= or every=)")
    return overlap, run_at_startup


def _resolve(queue: Queue, task: Task[Any, Any] | str) -> Task[Any, Any] | None:
    if isinstance(task, Task):
        return task
    return queue.tasks.get(task) if isinstance(task, str) else None


def declared(queue: Queue) -> list[tuple[str, Spec]]:
    """The schedules declared in code on the queue's tasks, keyed by task name (those
    of a shard's: the ones it holds)."""
    out = []
    for name, task in queue.tasks.items():
        if task.recurring is not None and queue._root._schedule_shard(name) is queue:
            spec = Spec(task=name, payload=encode_payload((), {}), priority=task.priority, rule=task.recurring,
                        declared=True, overlap=task.overlap)  # fmt: skip
            out.append((name, spec))
    return out


# -- Redis ---------------------------------------------------------------------------------------


async def redis_now_ms(queue: Queue) -> int:
    sec, usec = await queue.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def upsert(queue: Queue, key: str, spec: Spec, *, now_ms: int | None = None) -> ScheduleInfo:
    """Write the schedule; an unchanged spec keeps its next run. Raises ValueError when it has
    no tick left (end_at passed), writing nothing."""
    if now_ms is None:
        now_ms = await redis_now_ms(queue)
    next_ms = next_tick(spec.rule, now_ms)
    if next_ms is None:
        raise ValueError(f"end_at: schedule {key!r} has no tick left after now")
    _, stored_next, last = await queue.scripts.schedule_set(key, encode_spec(spec), next_ms)
    return info(key, spec, stored_next, last)


async def remove(queue: Queue, key: str) -> bool:
    return await queue.scripts.unschedule(validate_key(key)) > 0


async def list_all(queue: Queue) -> list[ScheduleInfo]:
    """Every schedule of the queue (of all its shards), the soonest next run first (ended ones last)."""
    out = []
    for part in queue.parts:
        out += await _list_one(part)
    out.sort(key=lambda s: (s.next_run is None, s.next_run or datetime.min.replace(tzinfo=UTC), s.key))
    return out


async def _list_one(queue: Queue) -> list[ScheduleInfo]:
    k = queue.keys
    pipe = queue.redis.pipeline(transaction=True)
    pipe.hgetall(k.schedules)
    pipe.zrange(k.schedules_next, 0, -1, withscores=True)
    pipe.hgetall(k.schedules_last)
    specs, nexts, lasts = await pipe.execute()
    next_by_key = {raw.decode(): int(score) for raw, score in nexts}
    out = []
    for raw_key, raw_spec in specs.items():
        key = raw_key.decode()
        try:
            spec = decode_spec(raw_spec)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # written by another version: its pools still fire it
        last = lasts.get(raw_key)
        out.append(info(key, spec, next_by_key.get(key), int(last) if last else None))
    return out


def info(key: str, spec: Spec, next_ms: int | None, last_ms: int | None) -> ScheduleInfo:
    rule = spec.rule
    try:
        args, kwargs = _payload_decoder.decode(spec.payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        args, kwargs = [], {}
    return ScheduleInfo(
        key=key,
        task=spec.task,
        spec=rule.describe(),
        cron=rule.cron,
        every=timedelta(milliseconds=rule.every_ms) if rule.every_ms is not None else None,
        tz=rule.tz if rule.cron is not None else None,
        args=tuple(args),
        kwargs=kwargs,
        priority=spec.priority,
        misfire=rule.misfire,
        start_at=_dt(rule.start_ms),
        end_at=_dt(rule.end_ms),
        next_run=_dt(next_ms),
        last_run=_dt(last_ms),
        last_job_id=job_id(key, last_ms) if last_ms is not None else None,
        declared=spec.declared,
        overlap=spec.overlap,
    )


def _dt(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None
