"""The producer side: a named queue on a Redis server, and its task registry."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import hooks as _hooks
from . import schedule as _schedule
from ._batcher import Batcher
from ._connection import client_from_cluster, client_from_url, client_url, cluster_nodes
from ._keys import Keys, validate_queue_name
from ._limits import check_byte_limit, check_keep, check_wait, keep_ms
from ._listener import Listener
from ._scripts import EnqueueJob, JobOptions, Scripts, _ms
from ._url import redact_url
from .job import Job, JobStatus, due_time, encode_payload
from .retry import Backoff, BackoffFn
from .schedule import ScheduleInfo
from .task import EnqueueOptions, Task, validate_priority, validate_retries, validate_timeout

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL: Final = "redis://localhost:6379/0"
DEFAULT_KEEP_RESULT: Final = 86400.0
DEFAULT_MAX_PAYLOAD: Final = 1 << 20
DEFAULT_MAX_RESULT: Final = 1 << 20
_BATCH: Final = 1000  # jobs per round trip
_JOBS_PER_CALL: Final = 100  # jobs per enqueue.lua call: Redis runs nothing else meanwhile
_NO_OPTIONS: Final = EnqueueOptions()


class PayloadTooLarge(ValueError):
    """The encoded arguments are larger than the queue's ``max_payload_bytes``."""


class Queue:
    """A named job queue on one Redis server (or cluster hash slot).

    ``url`` defaults to ``$AIOTASKQ_REDIS_URL``, then ``redis://localhost:6379/0``; a
    Redis Cluster is ``redis+cluster://host:port[,host:port...]``, a master behind Sentinel
    ``redis+sentinel://host:port[,...]/<service>[/db]`` (docs/scaling.md). Pass
    ``redis`` to share an existing ``redis.asyncio.Redis`` client, or a
    ``redis.asyncio.RedisCluster`` whose nodes and credentials the queue then uses (neither
    may decode responses). Succeeded and cancelled jobs are kept for ``keep_result``
    seconds (0: not at all; ``KEEP_FOREVER``: until purged); failed jobs are kept until
    purged or requeued. A task's encoded arguments may take ``max_payload_bytes``, its
    encoded return value ``max_result_bytes`` (a larger one fails the job).

    ``wait_replicas=N`` makes an enqueue return only once N replicas have it (Redis ``WAIT``,
    up to ``wait_timeout`` seconds), and raise ``NotReplicated`` when they do not: a job that
    was acknowledged survives a failover. Job outcomes wait the same way (a warning when the
    replicas do not confirm them: the job would run again).
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        redis: Redis | RedisCluster | None = None,
        keep_result: float = DEFAULT_KEEP_RESULT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        max_result_bytes: int = DEFAULT_MAX_RESULT,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self.name = validate_queue_name(name)
        self.keys = Keys(name)
        self.keep_result = check_keep("keep_result", keep_result)
        self.max_payload_bytes = check_byte_limit("max_payload_bytes", max_payload_bytes)
        self.max_result_bytes = check_byte_limit("max_result_bytes", max_result_bytes)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.wait_replicas, self.wait_timeout = check_wait(wait_replicas, wait_timeout)
        self._url = url or os.environ.get("AIOTASKQ_REDIS_URL") or DEFAULT_URL
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._redis = None if self._cluster is not None else cast(Redis | None, redis)
        self._own_redis = self._redis is None
        if self._cluster is not None:
            self._url = "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in cluster_nodes(self._cluster))
            self._redis = client_from_cluster(self._cluster, self.keys.prefix)  # checks decode_responses
        elif self._redis is not None:
            if self._redis.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("redis: the client must be created with decode_responses=False")
            self._url = client_url(self._redis)
        self._scripts: Scripts | None = None
        self._batcher: Batcher | None = None
        self._plain: dict[tuple[str, int, float | None], JobOptions] = {}  # see _enqueue_plain
        self._listener: Listener | None = None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} at {self.url}{'' if self._own_redis else ' (a shared client)'}>"

    # -- connection ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Redis URL, with any password replaced by ``***`` (for a shared client, where it
        connects: ``redis://host:port/db``, ``redis+sentinel://...``, ``redis+cluster://...``)."""
        return redact_url(self._url)

    @property
    def redis(self) -> Redis:
        """The Redis client (created on first use). The queue's own client waits for a free
        connection when all of its pool's are in use (see aiotaskq/_connection.py)."""
        if self._redis is None:
            if self._cluster is not None:
                self._redis = client_from_cluster(self._cluster, self.keys.prefix)
            else:
                self._redis = client_from_url(self._url, self.keys.prefix)
        return self._redis

    def use_url(self, url: str) -> None:
        """Point the queue at another Redis before it connects (the CLI's ``--url``)."""
        if self._redis is not None or self._cluster is not None:
            raise RuntimeError("use_url: the queue is already connected")
        self._url = url

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            wait = (self.wait_replicas, round(self.wait_timeout * 1000)) if self.wait_replicas else None
            self._scripts = Scripts(self.redis, self.keys, wait)
        return self._scripts

    def _listener_for_waiters(self) -> Listener:
        if self._listener is None:
            self._listener = Listener(self.redis)
        return self._listener

    async def close(self) -> None:
        """Release the pub/sub connection and, unless it was shared, the client."""
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._redis is not None and self._own_redis:
            await self._redis.aclose()
            self._redis = None
            self._scripts = None
            self._batcher = None

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- tasks ---------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        priority: int = 0,
        backoff: Backoff | BackoffFn | tuple[float, float] | None = None,
        keep_result: float | None = None,
        cron: str | None = None,
        every: timedelta | float | None = None,
        tz: str | None = None,
        misfire: str | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(  # type: ignore[misc]  # mypy cannot match a ParamSpec only in overload 2's return type
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        priority: int = 0,
        backoff: Backoff | BackoffFn | tuple[float, float] | None = None,
        keep_result: float | None = None,
        cron: str | None = None,
        every: timedelta | float | None = None,
        tz: str | None = None,
        misfire: str | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task (``@queue.task`` or ``@queue.task(...)``).

        The bare form names it ``module.qualname``. Coroutine functions run on the
        event loop; plain functions run in a worker thread. With ``cron=`` (in ``tz``,
        default UTC) or ``every=`` the task also recurs (it must take no required
        arguments): every pool upserts that schedule at start, keyed by the task's name.
        """

        def register(f: Callable[P, R]) -> Task[P, R]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks:
                raise ValueError(f"name: a task named {task_name!r} is already registered on {self.name!r}")
            t = Task(
                self,
                f,
                name=task_name,
                retries=retries,
                timeout=timeout,
                priority=priority,
                backoff=backoff,
                keep_result=keep_result,
            )
            t.recurring = _schedule.task_rule(t, cron=cron, every=every, tz=tz, misfire=misfire)
            self.tasks[task_name] = t
            return t

        return register(fn) if fn is not None else register

    # -- enqueue -------------------------------------------------------------------------------

    async def enqueue(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        delay: float | None = None,
        at: Any = None,
        priority: int | None = None,
        job_id: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Job | None:
        """Enqueue a run of the task registered under ``name`` (which need not be
        known in this process). Returns None when ``job_id`` names a job that is
        scheduled, queued or active (deduplication)."""
        options = EnqueueOptions(delay, at, priority, job_id, retries, timeout)
        return await self._enqueue_one(name, self.tasks.get(name), tuple(args), dict(kwargs or {}), options)

    async def _enqueue_plain(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """``task.enqueue(...)``, the web handler's call: the task's own options, checked
        once per option set, and as few frames and objects per call as the job needs."""
        key = (task.name, task.priority, task.timeout)
        options = self._plain.get(key)
        if options is None:
            options = self._plain[key] = self._options(task.name, task, _NO_OPTIONS)
        job_id, payload = self._job(args, kwargs, None)
        await (self._batcher or self._new_batcher()).enqueue((options, job_id, payload))
        return Job(self, job_id)  # a generated id is never deduplicated (see _handle)

    async def _enqueue_task(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: EnqueueOptions
    ) -> Job | None:
        return await self._enqueue_one(task.name, task, args, kwargs, options)

    async def _enqueue_one(
        self,
        name: str,
        task: Task[Any, Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> Job | None:
        job = (self._options(name, task, options), *self._job(args, kwargs, options.job_id))
        batcher = self._batcher or self._new_batcher()
        return self._handle(job[1], await batcher.enqueue(job), options)

    def _new_batcher(self) -> Batcher:
        self._batcher = Batcher(self.scripts)
        return self._batcher

    def _handle(self, job_id: str, written: int, options: EnqueueOptions) -> Job | None:
        """The job, or None when deduplicated. A generated id is ours alone: when the
        script finds it already pending, redis-py re-sent the call after a lost reply
        and the first try stored the job."""
        return Job(self, job_id) if written or options.job_id is None else None

    async def _enqueue_many(
        self, task: Task[Any, Any], items: list[tuple[tuple[Any, ...], dict[str, Any]]], options: EnqueueOptions
    ) -> list[Job | None]:
        if options.job_id is not None and len(items) > 1:
            raise ValueError("job_id: cannot be shared by several jobs in enqueue_many")
        shared = self._options(task.name, task, options)
        # Every job checked before any is written.
        jobs: list[EnqueueJob] = [(shared, *self._job(a, kw, options.job_id)) for a, kw in items]
        out: list[Job | None] = []
        enqueue = self.scripts.enqueue
        for start in range(0, len(jobs), _BATCH):
            chunk = jobs[start : start + _BATCH]
            calls = [enqueue(chunk[i : i + _JOBS_PER_CALL]) for i in range(0, len(chunk), _JOBS_PER_CALL)]
            codes: list[int] = []
            for res in await self.scripts.run_many(calls):
                if isinstance(res, Exception):
                    raise res
                codes += res
            out += [self._handle(job[1], code, options) for job, code in zip(chunk, codes, strict=True)]
        return out

    def _options(self, name: str, task: Task[Any, Any] | None, o: EnqueueOptions) -> JobOptions:
        """Check the options once for all jobs of an enqueue call; encode them for enqueue.lua."""
        if not isinstance(name, str) or not name:
            raise ValueError("name: a task name must be a non-empty string")
        delay, at_ms = due_time(o.delay, o.at)
        priority = validate_priority(o.priority if o.priority is not None else (task.priority if task else 0))
        # Retries not given: left out of the job, and the claim takes the default the
        # workers registered for the task (the same declaration, and less memory per job).
        retries = o.retries
        if retries is not None:
            validate_retries(retries)
        timeout = validate_timeout(o.timeout if o.timeout is not None else (task.timeout if task else None))
        if o.job_id is not None and (not isinstance(o.job_id, str) or not o.job_id):
            raise ValueError(f"job_id: must be a non-empty string, got {o.job_id!r}")
        return (name, priority, "" if retries is None else retries, _seconds_text(timeout),
                _ms(delay), "" if at_ms is None else at_ms, "1" if o.job_id is None else "")  # fmt: skip

    def _job(self, args: tuple[Any, ...], kwargs: dict[str, Any], job_id: str | None) -> tuple[str, bytes]:
        payload = encode_payload(args, kwargs)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"args: the encoded arguments take {len(payload)} bytes, over max_payload_bytes="
                f"{self.max_payload_bytes}; store large data elsewhere and pass a reference"
            )
        return job_id or secrets.token_urlsafe(12), payload  # 96 random bits in 16 characters

    # -- inspection and maintenance ------------------------------------------------------------

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job with this id (no Redis call). Its ``result()`` converts the
        value to the return annotation of the job's task when it is registered here."""
        return Job(self, job_id)

    def _keep_ms(self, task: Task[Any, Any] | None) -> int:
        """How long a job of ``task`` is kept once it ended, as the scripts take it (ms,
        -1 forever): the task's keep_result, else the queue's."""
        keep = task.keep_result if task is not None and task.keep_result is not None else self.keep_result
        return keep_ms(keep)

    async def counts(self) -> dict[JobStatus, int]:
        """The number of jobs in each status, zeros included."""
        values = await self.scripts.counts()
        order = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.ACTIVE,
                 JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)  # fmt: skip
        return dict(zip(order, values, strict=True))

    async def job_ids(self, status: JobStatus | str, limit: int = 100) -> list[str]:
        """Ids of jobs in ``status``: ended ones newest first, scheduled and queued in
        the order they will run, active ones in no particular order."""
        status = JobStatus(status)
        if limit <= 0:
            raise ValueError(f"limit: must be > 0, got {limit!r}")
        r, k = self.redis, self.keys
        raw: list[bytes]
        if status is JobStatus.ACTIVE:
            ids: list[bytes] = []
            pool_ids: list[bytes] = await r.zrange(k.pools, 0, -1)  # type: ignore[assignment]
            for pool_id in pool_ids:
                ids.extend(await r.smembers(k.pool(pool_id.decode())))  # type: ignore[arg-type]
                if len(ids) >= limit:
                    break
            raw = ids[:limit]
        elif status is JobStatus.SCHEDULED:
            raw = await r.zrange(k.scheduled, 0, limit - 1)  # type: ignore[assignment]
        elif status is JobStatus.QUEUED:  # the order of claiming: highest priority band first, FIFO in each
            raw = []
            bands: list[bytes] = await r.zrange(k.queued, 0, -1)  # type: ignore[assignment]
            for band in bands:
                raw += cast(list[bytes], await r.lrange(k.band(band.decode()), 0, limit - len(raw) - 1))
                if len(raw) >= limit:
                    break
        else:
            raw = await r.zrevrange(k.ended(status.value), 0, limit - 1)  # type: ignore[assignment]
        return [x.decode() for x in raw]

    async def requeue_failed(self, ids: Iterable[str] | None = None) -> int:
        """Move failed jobs back to ``queued`` with fresh retries (all when ids is None)."""
        if ids is None:
            total = 0
            while n := await self._requeue_failed_batch([]):
                total += n
            return total
        id_list = list(ids)
        total = 0
        for start in range(0, len(id_list), _BATCH):
            total += await self._requeue_failed_batch(id_list[start : start + _BATCH])
        return total

    async def _requeue_failed_batch(self, ids: list[str]) -> int:
        return await self.scripts.requeue_failed(ids, _BATCH)

    async def purge(self, status: JobStatus | str) -> int:
        """Delete every job in ``status`` with its data; returns how many. Active
        jobs cannot be purged (cancel them)."""
        status = JobStatus(status)
        if status is JobStatus.ACTIVE:
            raise ValueError("status: active jobs cannot be purged; cancel them instead")
        zset = {
            JobStatus.SCHEDULED: self.keys.scheduled,
            JobStatus.QUEUED: self.keys.queued,
        }.get(status) or self.keys.ended(status.value)
        total = 0
        while True:
            taken, deleted = await self.scripts.purge(status.value, zset, _BATCH)
            total += deleted
            if taken == 0:
                return total

    # -- recurring schedules -------------------------------------------------------------------

    async def schedule(
        self,
        key: str,
        task: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        tz: str | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        priority: int | None = None,
        misfire: str | None = None,
    ) -> ScheduleInfo:
        """Add or replace (by ``key``) a schedule that enqueues ``task`` on each tick of a
        ``cron`` expression (in ``tz``, default UTC) or of a fixed interval ``every``.

        Every running pool picks it up at once. Replacing it with an equal spec keeps its
        next run. ``misfire`` ("once", "skip" or "all") decides what runs after ticks were
        missed (see docs/recurring.md). Bad input raises ValueError and writes nothing.
        """
        spec = _schedule.build(
            self, key, task, cron=cron, every=every, args=args, kwargs=kwargs, tz=tz,
            start_at=start_at, end_at=end_at, priority=priority, misfire=misfire,
        )  # fmt: skip
        return await _schedule.upsert(self, key, spec)

    async def unschedule(self, key: str) -> bool:
        """Remove a schedule; False when there was none. Jobs it enqueued are not touched."""
        return await _schedule.remove(self, key)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule of the queue, the soonest next run first."""
        return await _schedule.list_all(self)

    # -- hooks (see aiotaskq/hooks.py) ---------------------------------------------------------

    def on_startup(self, fn: _hooks.PoolHookT) -> _hooks.PoolHookT:
        """Decorator: ``fn(pool)`` runs when a pool serving this queue starts, before it
        claims a job (the CLI's worker included). Open what tasks share here, in
        ``pool.state``. A plain function or a coroutine function."""
        _hooks.check_hook("on_startup", fn)
        _hooks.hooks_of(self).on_startup.append(fn)
        return fn

    def on_shutdown(self, fn: _hooks.PoolHookT) -> _hooks.PoolHookT:
        """Decorator: ``fn(pool)`` runs when a pool serving this queue has stopped
        (its jobs finished or handed back); close what ``on_startup`` opened."""
        _hooks.check_hook("on_shutdown", fn)
        _hooks.hooks_of(self).on_shutdown.append(fn)
        return fn

    def before_job(self, fn: _hooks.BeforeJobT) -> _hooks.BeforeJobT:
        """Decorator: ``fn(ctx)`` runs before each attempt of this queue's jobs, with the
        job's context (``JobContext``). An error fails the attempt as a task error would."""
        _hooks.check_hook("before_job", fn)
        _hooks.hooks_of(self).before_job.append(fn)
        return fn

    def after_job(self, fn: _hooks.AfterJobT) -> _hooks.AfterJobT:
        """Decorator: ``fn(ctx, outcome)`` runs after each attempt of this queue's jobs,
        before its outcome (a ``JobOutcome``) is recorded. An error is logged; the outcome stands."""
        _hooks.check_hook("after_job", fn)
        _hooks.hooks_of(self).after_job.append(fn)
        return fn


def _seconds_text(seconds: float | None) -> str:
    """Seconds as the job hash stores them: '' for none, '7' rather than '7.0' (memory per job)."""
    if seconds is None:
        return ""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
