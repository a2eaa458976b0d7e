"""The producer side: a named queue on a Redis server, and its task registry."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, ParamSpec, Protocol, TypeVar, cast, overload

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import hooks as _hooks
from . import schedule as _schedule
from ._batcher import Batcher
from ._connection import client_from_cluster, client_from_url, client_url, cluster_nodes
from ._keys import Keys, validate_queue_name
from ._limits import check_byte_limit, check_keep, check_seconds, check_wait, keep_ms
from ._listener import Listener
from ._record import encode_parents
from ._scripts import EnqueueJob, JobOptions, Scripts, _ms, enqueue_call, not_replicated
from ._shards import check_shards, job_shard, key_shard, shard_tags
from ._sync import SyncClient, sync_client
from ._url import redact_url
from .errors import JobNotFound
from .errors import PayloadTooLarge as PayloadTooLarge  # its home was here: aiotaskq.queue.PayloadTooLarge still works
from .job import GROUP_META, Group, Job, JobStatus, due_time, encode_payload
from .retry import Backoff, BackoffFn
from .schedule import ScheduleInfo
from .task import (
    Call,
    EnqueueOptions,
    Task,
    parent_ids,
    validate_key,
    validate_priority,
    validate_retries,
    validate_timeout,
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_URL: Final = "redis://localhost:6379/0"
DEFAULT_KEEP_RESULT: Final = 86400.0
DEFAULT_MAX_PAYLOAD: Final = 1 << 20
DEFAULT_MAX_RESULT: Final = 1 << 20
_BATCH: Final = 1000  # jobs per round trip
_JOBS_PER_CALL: Final = 100  # jobs per enqueue.lua call: Redis runs nothing else meanwhile
_NO_OPTIONS: Final = EnqueueOptions()


class EnqueueObserver(Protocol):
    """Watches a queue's enqueues: ``Queue.observer`` (None by default: an enqueue then tests
    that one attribute, nothing more). ``jobs_enqueued(queue, task, n)`` is called once ``n``
    jobs of ``task`` were written by one call of ``enqueue``, ``task.enqueue`` or
    ``enqueue_many`` (jobs deduplicated by their ``job_id`` are not counted), on the caller's
    event loop. Recurring ticks, which pools enqueue, are not seen here."""

    def jobs_enqueued(self, queue: Queue, task: str, n: int) -> None: ...


class EnqueueTracer(Protocol):
    """Wraps a queue's enqueue calls: ``Queue.tracer`` (None by default; ``aiotaskq.tracing``).
    ``send_started(queue, task, n)`` is called before the ``n`` jobs of a call are encoded, and
    returns a token and the map (str -> str) every one of them carries (the trace context);
    ``send_ended(token, job_ids, error)`` once the call wrote them (the ids written: not the
    deduplicated ones) or raised ``error``."""

    def send_started(self, queue: Queue, task: str, n: int) -> tuple[Any, dict[str, str]]: ...

    def send_ended(self, token: Any, job_ids: list[str], error: BaseException | None) -> None: ...


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

    ``shards=N`` spreads the queue over N hash slots (so over a cluster's masters): each job
    lives in the shard its id hashes to, pools serve every shard, and the methods here see the
    whole queue. Priority and FIFO order hold within a shard (docs/scaling.md).
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
        shards: int = 1,
    ) -> None:
        self.name = validate_queue_name(name)
        self.shards = check_shards(shards)
        self.keep_result = check_keep("keep_result", keep_result)
        self.max_payload_bytes = check_byte_limit("max_payload_bytes", max_payload_bytes)
        self.max_result_bytes = check_byte_limit("max_result_bytes", max_result_bytes)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.wait_replicas, self.wait_timeout = check_wait(wait_replicas, wait_timeout)
        self._root = self  # the queue a shard belongs to; a queue that is no shard: itself
        self.observer: EnqueueObserver | None = None
        self.tracer: EnqueueTracer | None = None
        self._plain: dict[tuple[str, int, float | None], JobOptions] = {}  # see _enqueue_plain
        tags = shard_tags(self.name, self.shards)
        self._parts: list[Queue] | None = None
        if self.shards == 1:
            self._connect(url, redis, tags[0])
        else:
            self._parts = [self._shard(tag, url, redis) for tag in tags]
            self._connect(url, redis, tags[0], client=False)

    def _shard(self, tag: str, url: str | None, redis: Redis | RedisCluster | None) -> Queue:
        """One shard of this queue: a queue of its own keys that shares this one's settings and tasks."""
        s = object.__new__(Queue)
        s.name, s.shards, s.tasks = self.name, 1, self.tasks
        s.keep_result, s.max_payload_bytes, s.max_result_bytes = (
            self.keep_result, self.max_payload_bytes, self.max_result_bytes)  # fmt: skip
        s.wait_replicas, s.wait_timeout = self.wait_replicas, self.wait_timeout
        s._root, s._plain, s._parts = self, {}, None
        s.observer = s.tracer = None  # enqueues are told by the queue the shard belongs to
        s._connect(url, redis, tag)
        return s

    def _connect(self, url: str | None, redis: Redis | RedisCluster | None, tag: str, *, client: bool = True) -> None:
        """Keys and connection settings; a sharded queue's own (``client=False``) has no client: its shards do."""
        self.keys = Keys(self.name, tag)
        self._url = url or os.environ.get("AIOTASKQ_REDIS_URL") or DEFAULT_URL
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._redis = None if self._cluster is not None else cast(Redis | None, redis)
        self._own_redis = self._redis is None
        if not client:
            self._redis = None
            if self._parts:
                self._url = self._parts[0]._url
        elif self._cluster is not None:
            self._url = "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in cluster_nodes(self._cluster))
            self._redis = client_from_cluster(self._cluster, self.keys.prefix)  # checks decode_responses
        elif self._redis is not None:
            if self._redis.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("redis: the client must be created with decode_responses=False")
            self._url = client_url(self._redis)
        self._scripts: Scripts | None = None
        self._batcher: Batcher | None = None
        self._listener: Listener | None = None
        self._sync: SyncClient | None = None  # see aiotaskq/_sync.py (the root queue's, for all shards)

    def __repr__(self) -> str:
        shards = f" in {self.shards} shards" if self.shards > 1 else ""
        return f"<Queue {self.name!r}{shards} at {self.url}{'' if self._own_redis else ' (a shared client)'}>"

    @property
    def parts(self) -> list[Queue]:
        """The queues this one is made of: its shards, or itself alone."""
        return self._parts or [self]

    def _shard_of(self, job_id: str) -> Queue:
        """The shard that holds the job with this id (the queue itself when not sharded)."""
        return self if self._parts is None else self._parts[job_shard(job_id, self.shards)]

    def _schedule_shard(self, key: str) -> Queue:
        """The shard that holds the schedule with this key, and its ticks' jobs."""
        return self if self._parts is None else self._parts[key_shard(key, self.shards)]

    # -- connection ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Redis URL, with any password replaced by ``***`` (for a shared client, where it
        connects: ``redis://host:port/db``, ``redis+sentinel://...``, ``redis+cluster://...``)."""
        return redact_url(self._url)

    @property
    def redis(self) -> Redis:
        """The Redis client (created on first use). The queue's own client waits for a free
        connection when all of its pool's are in use (see aiotaskq/_connection.py). A sharded
        queue's: its first shard's (each shard has a client: ``parts``)."""
        if self._parts is not None:
            return self._parts[0].redis
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
        for part in self._parts or ():
            part.use_url(url)
        self._url = url
        self.close_sync()

    @property
    def scripts(self) -> Scripts:
        if self._parts is not None:
            return self._parts[0].scripts
        if self._scripts is None:
            wait = (self.wait_replicas, round(self.wait_timeout * 1000)) if self.wait_replicas else None
            self._scripts = Scripts(self.redis, self.keys, wait)
        return self._scripts

    def _listener_for_waiters(self) -> Listener:
        if self._parts is not None:
            return self._parts[0]._listener_for_waiters()
        if self._listener is None:
            self._listener = Listener(self.redis)
        return self._listener

    async def close(self) -> None:
        """Release the pub/sub connection and, unless it was shared, the client (of each shard),
        and the blocking connections of the sync calls."""
        self.close_sync()
        for part in self._parts or ():
            await part.close()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._redis is not None and self._own_redis:
            await self._redis.aclose()
            self._redis = None
            self._scripts = None
            self._batcher = None

    def close_sync(self) -> None:
        """Release the blocking connections of the sync calls (``enqueue_sync``...), if any;
        the next sync call opens them again."""
        client, self._sync = self._sync, None
        if client is not None:
            client.close()

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
        overlap: bool = True,
        run_at_startup: bool = False,
        rate_limit: str | None = None,
        key_concurrency: int | None = None,
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
        overlap: bool = True,
        run_at_startup: bool = False,
        rate_limit: str | None = None,
        key_concurrency: int | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task (``@queue.task`` or ``@queue.task(...)``).

        The bare form names it ``module.qualname``. Coroutine functions run on the
        event loop; plain functions run in a worker thread. With ``cron=`` (in ``tz``,
        default UTC) or ``every=`` the task also recurs (it must take no required
        arguments): every pool upserts that schedule at start, keyed by the task's name.
        ``overlap=False`` skips a tick (with a warning) while the previous tick's job is still
        pending; ``run_at_startup=True`` also runs it when a pool starts (once for pools that
        start together: the run is deduplicated while pending). ``rate_limit="N/s"`` (``/m``,
        ``/h``): at most N of its jobs start per second (minute, hour) across all pools, and its
        waiting jobs never hold up other tasks' (docs/rate-limits.md). ``key_concurrency=K``: at
        most K of its jobs enqueued with one ``options(key=...)`` run at once across all pools, the
        keys served in turn (docs/key-concurrency.md).
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
                rate_limit=rate_limit,
                key_concurrency=key_concurrency,
            )
            t.recurring = _schedule.task_rule(t, cron=cron, every=every, tz=tz, misfire=misfire)
            t.overlap, t.run_at_startup = _schedule.check_recurring_flags(t.recurring, overlap, run_at_startup)
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
        expires: float | timedelta | None = None,
        key: str | None = None,
        after: Iterable[Job[Any] | str] | None = None,
    ) -> Job | None:
        """Enqueue a run of the task registered under ``name`` (which need not be
        known in this process). Returns None when ``job_id`` names a job that is
        scheduled, queued or active (deduplication). ``expires``, ``key``, ``after``: as
        ``task.options``'."""
        parents = None if after is None else parent_ids(self, after)
        options = EnqueueOptions(delay, at, priority, job_id, retries, timeout, expires, key, parents)
        if key is not None:
            validate_key(key)
        task, a, kw = self.tasks.get(name), tuple(args), dict(kwargs or {})
        if self.tracer is not None:
            return cast(
                "Job | None", await self._traced(name, 1, lambda m: self._enqueue_one(name, task, a, kw, options, m))
            )
        return await self._enqueue_one(name, task, a, kw, options)

    async def _enqueue_plain(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """``task.enqueue(...)``, the web handler's call: the task's own options, checked
        once per option set, and as few frames and objects per call as the job needs."""
        if self.tracer is not None:
            return cast(Job, await self._traced(task.name, 1, lambda m: self._enqueue_one(
                task.name, task, args, kwargs, _NO_OPTIONS, m)))  # fmt: skip
        key = (task.name, task.priority, task.timeout)
        options = self._plain.get(key)
        if options is None:
            options = self._plain[key] = self._options(task.name, task, _NO_OPTIONS)
        job_id, payload = self._job(args, kwargs, None)
        q = self if self._parts is None else self._parts[job_shard(job_id, self.shards)]
        await (q._batcher or q._new_batcher()).enqueue((options, job_id, payload))
        if self.observer is not None:
            self.observer.jobs_enqueued(self, task.name, 1)
        return Job(self, job_id)  # a generated id is never deduplicated (see _handle)

    async def _enqueue_task(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: EnqueueOptions
    ) -> Job | None:
        if self.tracer is not None:
            one = await self._traced(
                task.name, 1, lambda m: self._enqueue_one(task.name, task, args, kwargs, options, m)
            )
            return cast("Job | None", one)
        return await self._enqueue_one(task.name, task, args, kwargs, options)

    async def _traced(self, name: str, n: int, call: Callable[[dict[str, str]], Any]) -> Any:
        """An enqueue call wrapped by the queue's tracer (see EnqueueTracer)."""
        assert self.tracer is not None
        token, meta = self.tracer.send_started(self, name, n)
        try:
            out = await call(meta)
        except BaseException as exc:
            self.tracer.send_ended(token, [], exc)
            raise
        jobs = out if isinstance(out, list) else [out]
        self.tracer.send_ended(token, [j.id for j in jobs if j is not None], None)
        return out

    async def _enqueue_one(
        self,
        name: str,
        task: Task[Any, Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
        meta: dict[str, str] | None = None,
    ) -> Job | None:
        job = (self._options(name, task, options),
               *self._job(args, kwargs, options.job_id, meta, self._placement(name, options)))  # fmt: skip
        q = self._shard_of(job[1])
        batcher = q._batcher or q._new_batcher()
        out = self._handle(job[1], await batcher.enqueue(job), options)
        if out is not None and self.observer is not None:
            self.observer.jobs_enqueued(self, name, 1)
        return out

    # -- enqueue without an event loop (aiotaskq/_sync.py) ------------------------------------

    def enqueue_sync(
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
        expires: float | timedelta | None = None,
        key: str | None = None,
        after: Iterable[Job[Any] | str] | None = None,
    ) -> Job | None:
        """``enqueue`` for code without an event loop (a Django or Flask view, a script):
        blocking, thread-safe, on redis-py's blocking client and the same script."""
        parents = None if after is None else parent_ids(self, after)
        options = EnqueueOptions(delay, at, priority, job_id, retries, timeout, expires, key, parents)
        if key is not None:
            validate_key(key)
        return self._enqueue_one_sync(name, self.tasks.get(name), tuple(args), dict(kwargs or {}), options)

    def _enqueue_one_sync(
        self, name: str, task: Task[Any, Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> Job | None:  # fmt: skip
        if self.tracer is None:
            return self._write_sync(name, task, args, kwargs, options, None)
        token, meta = self.tracer.send_started(self, name, 1)
        try:
            out = self._write_sync(name, task, args, kwargs, options, meta)
        except BaseException as exc:
            self.tracer.send_ended(token, [], exc)
            raise
        self.tracer.send_ended(token, [out.id] if out is not None else [], None)
        return out

    def _write_sync(
        self, name: str, task: Task[Any, Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any],
        options: EnqueueOptions, meta: dict[str, str] | None,
    ) -> Job | None:  # fmt: skip
        job = (self._options(name, task, options),
               *self._job(args, kwargs, options.job_id, meta, self._placement(name, options)))  # fmt: skip
        [code] = self._run_sync([job])
        out = self._handle(job[1], code, options)
        if out is not None and self.observer is not None:
            self.observer.jobs_enqueued(self, name, 1)
        return out

    def _run_sync(self, jobs: list[EnqueueJob]) -> list[int | bytes]:
        """Write jobs with enqueue.lua on the blocking client, each in its shard, ``_JOBS_PER_CALL``
        per call; one code each, in order. NotReplicated when a durable queue's WAIT falls short."""
        root = self._root
        wait = (root.wait_replicas, round(root.wait_timeout * 1000)) if root.wait_replicas else None
        by_part: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            by_part.setdefault(id(self._shard_of(job[1])), []).append(i)
        codes: list[int | bytes] = [0] * len(jobs)
        client = sync_client(self)
        for where in by_part.values():
            keys = self._shard_of(jobs[where[0]][1]).keys
            for start in range(0, len(where), _JOBS_PER_CALL):
                chunk = where[start : start + _JOBS_PER_CALL]
                out, confirmed = client.run(enqueue_call(keys, [jobs[i] for i in chunk]), wait)
                if wait is not None and confirmed is not None and confirmed < wait[0]:
                    raise not_replicated(self.name, confirmed, *wait)
                for i, code in zip(chunk, out, strict=True):
                    codes[i] = code
        return codes

    def _enqueue_many_sync(
        self, task: Task[Any, Any], items: list[tuple[tuple[Any, ...], dict[str, Any]]], options: EnqueueOptions
    ) -> list[Job | None]:
        """``enqueue_many`` on the blocking client: every job checked before any is written."""
        if options.job_id is not None and len(items) > 1:
            raise ValueError("job_id: cannot be shared by several jobs in enqueue_many")
        token = meta = None
        if self.tracer is not None:
            token, meta = self.tracer.send_started(self, task.name, len(items))
        try:
            shared, shard = self._options(task.name, task, options), self._placement(task.name, options)
            jobs: list[EnqueueJob] = [(shared, *self._job(a, kw, options.job_id, meta, shard)) for a, kw in items]
            out = [self._handle(job[1], code, options) for job, code in zip(jobs, self._run_sync(jobs), strict=True)]
        except BaseException as exc:
            if self.tracer is not None:
                self.tracer.send_ended(token, [], exc)
            raise
        if self.tracer is not None:
            self.tracer.send_ended(token, [j.id for j in out if j is not None], None)
        if self.observer is not None and (written := sum(j is not None for j in out)):
            self.observer.jobs_enqueued(self, task.name, written)
        return out

    def _new_batcher(self) -> Batcher:
        self._batcher = Batcher(self.scripts)
        return self._batcher

    def _handle(self, job_id: str, written: int | bytes, options: EnqueueOptions) -> Job | None:
        """The job, or None when deduplicated. A generated id is ours alone: when the
        script finds it already pending, redis-py re-sent the call after a lost reply
        and the first try stored the job. ``missing:<id>``: a parent that is no job."""
        if isinstance(written, bytes):
            parent = written.decode(errors="replace").removeprefix("missing:")
            exc = JobNotFound(parent)
            exc.add_note(f"after: job {parent!r} of queue {self.name!r} is not scheduled, queued, active or kept "
                         "after its end (keep_result): nothing can wait for it; the job was not enqueued")  # fmt: skip
            raise exc
        return Job(self, job_id) if written or options.job_id is None else None

    async def group(self, calls: Iterable[Call[Any]], *, then: Call[T], return_exceptions: bool = False) -> Group[T]:
        """Enqueue the ``calls`` (``task.call(...)``) and a callback ``then`` that runs once,
        after every one of them ended, with their results in call order as its first argument
        (before the arguments of ``then``). A member that fails or is cancelled fails the
        callback with DependencyFailed naming it; with ``return_exceptions=True`` the callback
        runs anyway and finds that member's JobFailed or JobCancelled in its place. Members
        and callback are written in one script call, so no member ends before the callback
        waits for it; on a sharded queue they all live in one shard (docs/groups.md)."""
        members = _group_calls(self.name, calls, then, return_exceptions)
        shard = self._group_shard([*members, then])
        jobs: list[EnqueueJob] = []
        for c in members:
            o = c.options
            jobs.append((self._options(c.task.name, c.task, o), *self._job(c.args, c.kwargs, o.job_id, None, shard)))
        ids = tuple(j[1] for j in jobs)
        spec = {"members": [[i, c.task.name] for i, c in zip(ids, members, strict=True)], "errors": return_exceptions}
        o = replace(then.options, after=ids)
        options = self._options(then.task.name, then.task, o)
        options = (*options[:10], "e" if return_exceptions else "r")
        callback = (options, *self._job(then.args, then.kwargs, o.job_id, {GROUP_META: json.dumps(spec)}, shard))
        q = self if shard is None or self._parts is None else self._parts[shard]
        [codes] = await q.scripts.run_many([q.scripts.enqueue([*jobs, callback])])
        if isinstance(codes, Exception):
            raise codes
        if self.observer is not None:
            for c in [c for c, code in zip([*members, then], codes, strict=True) if code == 1]:
                self.observer.jobs_enqueued(self, c.task.name, 1)
        return Group([Job(self, i) for i in ids], Job(self, callback[1]))

    def _group_shard(self, calls: list[Call[Any]]) -> int | None:
        """The one shard a group's jobs live in: the one its keys and given job ids ask for."""
        if self._parts is None:
            return None
        wanted = {job_shard(c.options.job_id, self.shards) for c in calls if c.options.job_id is not None}
        wanted |= {s for c in calls if (s := self._placement(c.task.name, replace(c.options, job_id=None))) is not None}
        if len(wanted) > 1:
            raise ValueError(f"group: on queue {self.name!r} ({self.shards} shards) a group lives in one shard, and "
                             "its keys or job ids ask for several; leave job_id out to have ids chosen")  # fmt: skip
        return wanted.pop() if wanted else job_shard(_new_id(), self.shards)

    async def _enqueue_many(
        self,
        task: Task[Any, Any],
        items: list[tuple[tuple[Any, ...], dict[str, Any]]],
        options: EnqueueOptions,
        meta: dict[str, str] | None = None,
    ) -> list[Job | None]:
        if options.job_id is not None and len(items) > 1:
            raise ValueError("job_id: cannot be shared by several jobs in enqueue_many")
        if self.tracer is not None and meta is None:
            many = await self._traced(task.name, len(items), lambda m: self._enqueue_many(task, items, options, m))
            return cast("list[Job | None]", many)
        shared = self._options(task.name, task, options)
        # Every job checked before any is written.
        shard = self._placement(task.name, options)
        jobs: list[EnqueueJob] = [(shared, *self._job(a, kw, options.job_id, meta, shard)) for a, kw in items]
        if self._parts is None:
            codes = await self._write(jobs)
        else:  # each shard's jobs, the shards at once
            by_shard: dict[int, list[int]] = {}
            for i, job in enumerate(jobs):
                by_shard.setdefault(job_shard(job[1], self.shards), []).append(i)
            codes = [0] * len(jobs)
            parts = self._parts

            async def write(shard: int, where: list[int]) -> None:
                for i, code in zip(where, await parts[shard]._write([jobs[i] for i in where]), strict=True):
                    codes[i] = code

            await asyncio.gather(*(write(shard, where) for shard, where in by_shard.items()))
        written_jobs = [self._handle(job[1], code, options) for job, code in zip(jobs, codes, strict=True)]
        if self.observer is not None and (written := sum(j is not None for j in written_jobs)):
            self.observer.jobs_enqueued(self, task.name, written)
        return written_jobs

    async def _write(self, jobs: list[EnqueueJob]) -> list[int]:
        """Store jobs with enqueue.lua, ``_BATCH`` per round trip; what it returned for each."""
        codes: list[int] = []
        enqueue = self.scripts.enqueue
        for start in range(0, len(jobs), _BATCH):
            chunk = jobs[start : start + _BATCH]
            calls = [enqueue(chunk[i : i + _JOBS_PER_CALL]) for i in range(0, len(chunk), _JOBS_PER_CALL)]
            for res in await self.scripts.run_many(calls):
                if isinstance(res, Exception):
                    raise res
                codes += res
        return codes

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
        expires = o.expires.total_seconds() if isinstance(o.expires, timedelta) else o.expires
        expires_ms = "" if expires is None else _ms(check_seconds("expires", expires, zero=False))
        return (name, priority, "" if retries is None else retries, _seconds_text(timeout),
                _ms(delay), "" if at_ms is None else at_ms, "1" if o.job_id is None else "", expires_ms,
                o.key or "", encode_parents(list(o.after or ())), "")  # fmt: skip

    def _placement(self, name: str, o: EnqueueOptions) -> int | None:
        """The shard a job must live in, on a sharded queue: a keyed job's in its key's (one
        key's running jobs are counted in one place), a job with parents in theirs (one
        script sees them all); None when any shard will do."""
        if o.job_id is not None and o.after and o.job_id in o.after:
            raise ValueError(f"after: job {o.job_id!r} cannot wait for itself")
        if self._parts is None:
            return None
        shard = None if o.key is None else key_shard(f"{name}\0{o.key}", self.shards)
        if o.after:
            shards = {job_shard(p, self.shards) for p in o.after}
            if len(shards) > 1 or (shard is not None and shard not in shards):
                raise ValueError(f"after: on queue {self.name!r} ({self.shards} shards) a job and its parents must "
                                 "live in one shard, and these do not (nor can a keyed job wait for parents outside "
                                 "its key's shard); a group's members are placed so (queue.group)")  # fmt: skip
            shard = shards.pop()
        return shard

    def _job(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        job_id: str | None,
        meta: dict[str, str] | None = None,
        shard: int | None = None,
    ) -> tuple[str, bytes]:
        payload = encode_payload(args, kwargs, meta)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"args: the encoded arguments take {len(payload)} bytes, over max_payload_bytes="
                f"{self.max_payload_bytes}; store large data elsewhere and pass a reference"
            )
        if shard is None:
            return job_id or _new_id(), payload
        if job_id is None:  # an id of the shard's own (about N tries for N shards)
            job_id = _new_id()
            while job_shard(job_id, self.shards) != shard:
                job_id = _new_id()
        elif job_shard(job_id, self.shards) != shard:
            raise ValueError(f"job_id: {job_id!r} lives in shard {job_shard(job_id, self.shards)} of queue "
                             f"{self.name!r}, but this job must live in shard {shard} (its key's, or its parents'); "
                             "leave job_id out to have one chosen")  # fmt: skip
        return job_id, payload

    # -- inspection and maintenance ------------------------------------------------------------

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job with this id (no Redis call). Its ``result()`` converts the
        value to the return annotation of the job's task when it is registered here."""
        return Job(self, job_id)

    def _keep_ms(self, task: Task[Any, Any] | None) -> int:
        """How long a job of ``task`` is kept once it ended, as the scripts take it (ms,
        -1 forever): the task's keep_result, else the queue's."""
        keep = task.keep_result if task is not None and task.keep_result is not None else self._root.keep_result
        return keep_ms(keep)

    async def counts(self) -> dict[JobStatus, int]:
        """The number of jobs in each status, zeros included."""
        if self._parts is not None:
            each = await asyncio.gather(*(p.scripts.counts() for p in self._parts))
            values = [sum(column) for column in zip(*each, strict=True)]
        else:
            values = await self.scripts.counts()
        order = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.ACTIVE,
                 JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)  # fmt: skip
        return dict(zip(order, values, strict=True))

    async def job_ids(self, status: JobStatus | str, limit: int = 100, offset: int = 0) -> list[str]:
        """Ids of jobs in ``status``: ended ones newest first, scheduled and queued in
        the order they will run, active ones in no particular order; ``limit`` of them from
        ``offset`` on (a page). Across the shards of a sharded queue: by due time, by end
        time, and queued ones by priority, then by their place in their shard (about the
        order in which pools, serving the shards in turn, claim them)."""
        status = JobStatus(status)
        if not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit: must be an int > 0, got {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset: must be an int >= 0, got {offset!r}")
        if self._parts is None:
            return [job_id for _, job_id in await self._ranked_ids(status, offset, limit)]
        found = await asyncio.gather(*(p._ranked_ids(status, 0, offset + limit) for p in self._parts))
        merged = sorted((x for ids in found for x in ids), key=lambda x: x[0])
        return [job_id for _, job_id in merged[offset : offset + limit]]

    async def _ranked_ids(self, status: JobStatus, start: int, count: int) -> list[tuple[tuple[float, int], str]]:
        """This queue's ids in ``status`` from ``start``, ``count`` of them, in order, each with
        a key to merge shards' lists by."""
        r, k = self.redis, self.keys
        if status is JobStatus.ACTIVE:
            ids: list[bytes] = []
            pool_ids: list[bytes] = await r.zrange(k.pools, 0, -1)  # type: ignore[assignment]
            for pool_id in pool_ids:
                ids.extend(await r.smembers(k.pool(pool_id.decode())))  # type: ignore[arg-type]
                if len(ids) >= start + count:
                    break
            return [((0, i), x.decode()) for i, x in enumerate(ids[start : start + count], start)]
        if status is JobStatus.QUEUED:
            return await self._queued_ids(start, count)
        scored: list[tuple[bytes, float]]
        if status is JobStatus.SCHEDULED:
            scored = await r.zrange(k.scheduled, start, start + count - 1, withscores=True)  # type: ignore[assignment]
            return [((score, 0), x.decode()) for x, score in scored]
        scored = await r.zrevrange(k.ended(status.value), start, start + count - 1, withscores=True)  # type: ignore[assignment]
        return [((-score, 0), x.decode()) for x, score in scored]  # newest first

    async def _queued_ids(self, start: int, count: int) -> list[tuple[tuple[float, int], str]]:
        """Queued ids in the order of claiming: the highest priority band first, FIFO in each
        (bands before ``start`` are skipped by their length, not read); then the jobs of
        rate-limited tasks held for their next window, task by task."""
        r, k = self.redis, self.keys
        out: list[tuple[tuple[float, int], str]] = []
        bands: list[tuple[bytes, float]] = await r.zrange(k.queued, 0, -1, withscores=True)  # type: ignore[assignment]
        held: list[bytes] = await r.zrange(k.held, 0, -1)  # type: ignore[assignment]
        lists = [(k.band(b.decode()), score) for b, score in bands]
        lists += [(k.held_list(t.decode()), float("inf")) for t in held]
        seen = 0  # ids in the lists before this one
        for key, score in lists:  # bands scored -priority
            size = int(await r.llen(key))
            if start - seen < size:
                first = max(0, start - seen)
                raw = cast(list[bytes], await r.lrange(key, first, first + count - len(out) - 1))
                out += [((score, seen + first + i), x.decode()) for i, x in enumerate(raw)]
                if len(out) >= count:
                    break
            seen += size
        return out

    async def requeue_failed(
        self, ids: Iterable[str] | None = None, *, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Move failed jobs back to ``queued`` with fresh retries (all when ids is None).
        A job that failed with ``DependencyFailed`` waits for its parents again: requeued with
        its failed parent (or after it), it runs once the parent succeeds; while a parent is
        still failed or cancelled it stays failed (not counted). ``on_batch`` is called with
        the count of each batch requeued (a progress bar)."""
        if self._parts is not None:
            if ids is None:
                return sum(await asyncio.gather(*(p.requeue_failed(on_batch=on_batch) for p in self._parts)))
            by_shard: dict[int, list[str]] = {}
            for job_id in ids:
                by_shard.setdefault(job_shard(job_id, self.shards), []).append(job_id)
            parts = self._parts
            return sum(await asyncio.gather(*(parts[k].requeue_failed(i, on_batch=on_batch)
                                              for k, i in by_shard.items())))  # fmt: skip
        batches = [[]] if ids is None else _chunks(list(ids), _BATCH)  # [] asks for any failed jobs
        total = 0
        for batch in batches:
            offset = 0  # the oldest failed jobs left failed so far (parents still failed): passed over
            while True:
                n, seen, left = await self.scripts.requeue_failed(batch, _BATCH, offset)
                total, offset = total + n, offset + left
                if n and on_batch is not None:
                    on_batch(n)
                if batch or seen < _BATCH:
                    break
        return total

    async def purge(self, status: JobStatus | str, *, on_batch: Callable[[int], None] | None = None) -> int:
        """Delete every job in ``status`` with its data; returns how many. Active
        jobs cannot be purged (cancel them). ``on_batch`` as for ``requeue_failed``."""
        status = JobStatus(status)
        if status is JobStatus.ACTIVE:
            raise ValueError("status: active jobs cannot be purged; cancel them instead")
        if self._parts is not None:
            return sum(await asyncio.gather(*(p.purge(status, on_batch=on_batch) for p in self._parts)))
        zset = {
            JobStatus.SCHEDULED: self.keys.scheduled,
            JobStatus.QUEUED: self.keys.queued,
        }.get(status) or self.keys.ended(status.value)
        total = 0
        while True:
            taken, deleted = await self.scripts.purge(status.value, zset, _BATCH)
            total += deleted
            if on_batch is not None and deleted:
                on_batch(deleted)
            if taken == 0:
                return total

    # -- flow control --------------------------------------------------------------------------

    async def pause(self) -> bool:
        """Stop handing out jobs: from the next claim of every pool (milliseconds) nothing is
        taken from the queue and nothing handed to an idle pool. Running jobs finish, enqueues
        go on (the jobs wait). Returns False when it was paused already."""
        changed = [await p.scripts.pause(True) for p in self.parts]
        return any(changed)

    async def resume(self) -> bool:
        """Hand out jobs again; idle pools are woken at once. False when it was not paused."""
        changed = [await p.scripts.pause(False) for p in self.parts]
        return any(changed)

    async def paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.parts[0].redis.exists(self.parts[0].keys.paused))

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
        overlap: bool = True,
    ) -> ScheduleInfo:
        """Add or replace (by ``key``) a schedule that enqueues ``task`` on each tick of a
        ``cron`` expression (in ``tz``, default UTC) or of a fixed interval ``every``.

        Every running pool picks it up at once. Replacing it with an equal spec keeps its
        next run. ``misfire`` ("once", "skip" or "all") decides what runs after ticks were
        missed (see docs/recurring.md). ``overlap=False`` skips a tick while the previous
        tick's job is still pending. Bad input raises ValueError and writes nothing.
        """
        spec = _schedule.build(
            self, key, task, cron=cron, every=every, args=args, kwargs=kwargs, tz=tz,
            start_at=start_at, end_at=end_at, priority=priority, misfire=misfire, overlap=overlap,
        )  # fmt: skip
        return await _schedule.upsert(self._schedule_shard(key), key, spec)

    async def unschedule(self, key: str) -> bool:
        """Remove a schedule; False when there was none. Jobs it enqueued are not touched."""
        return await _schedule.remove(self._schedule_shard(_schedule.validate_key(key)), key)

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


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _group_calls(queue: str, calls: Iterable[Call[Any]], then: Call[Any], return_exceptions: bool) -> list[Call[Any]]:
    """The members of a group, checked with its callback."""
    members = list(calls)
    if not members:
        raise ValueError("group: needs at least one call")
    for c in [*members, then]:
        if not isinstance(c, Call):
            raise TypeError(f"group: expected task.call(...) or task.options(...).call(...), got {c!r}")
        if c.task.queue.name != queue:
            raise ValueError(f"group: task {c.task.name!r} belongs to queue {c.task.queue.name!r}, not "
                             f"{queue!r}: a group lives in one queue")  # fmt: skip
    if then.options.after:
        raise ValueError("then: a group's callback waits for the group's members; give it no after=")
    if not isinstance(return_exceptions, bool):
        raise ValueError(f"return_exceptions: must be a bool, got {return_exceptions!r}")
    return members


def _new_id() -> str:
    """96 random bits in 16 URL-safe characters, never starting with '-' (a command line
    would take such an id for an option: ``aiotaskq cancel --queue q <id>``)."""
    job_id = secrets.token_urlsafe(12)
    while job_id[0] == "-":
        job_id = secrets.token_urlsafe(12)
    return job_id
