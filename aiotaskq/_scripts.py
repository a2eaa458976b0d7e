"""Loads ``lua/*.lua`` once and gives one typed wrapper per script.

redis-py's ``AsyncScript`` calls EVALSHA and reloads the script on NOSCRIPT
(after a Redis restart, say); inside a pipeline it loads missing scripts first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple, cast

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import MovedError, NoScriptError, RedisError, ResponseError

from ._connection import cluster_error
from ._keys import Keys
from ._lua import source
from .errors import AiotaskqError

log = logging.getLogger("aiotaskq")

Arg = str | bytes | int | float
# A job for enqueue.lua: its option set (task name, priority, retries, timeout, delay ms, due
# time ms, each '' when not given; '1' when the ids are generated, else ''), id and payload
# (msgpack [args, kwargs]).
# task, priority, retries, timeout s, delay ms, due ms, generated id, expiry ms, key, parents,
# group mode: an option group of enqueue.lua (see its header).
JobOptions = tuple[str, int, Arg, Arg, Arg, Arg, str, str, str, str, str]
EnqueueJob = tuple[JobOptions, str, bytes]
_encoder = msgspec.msgpack.Encoder()
# How long a claim or heartbeat keeps a pool alive when the caller does not say (script
# tests); pools pass their own (one and a half presence ticks, see _runner.py).
_ALIVE_MS = 60_000


class Outcome(NamedTuple):
    """How one attempt ended, for settle.lua: kind is succeeded, cancelled, fail or requeue;
    data is the result (succeeded) or the error text (fail); n is the keep time in ms
    (succeeded, cancelled) or the retry delay in ms (fail, negative for none)."""

    kind: str
    id: str
    pool_id: str
    attempt: int
    data: bytes | str
    tb: str
    n: int


class Call(NamedTuple):
    """One script invocation, to run alone or in a pipeline."""

    script: str
    keys: list[str]
    args: list[Arg]


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else str(round(seconds * 1000))


def enqueue_call(keys: Keys, jobs: Iterable[EnqueueJob]) -> Call:
    """The enqueue.lua call for jobs of one queue (or shard): see Scripts.enqueue."""
    args: list[Arg] = [keys.prefix]
    last: JobOptions | None = None
    count = 0  # where the current group's job count goes
    for options, job_id, payload in jobs:
        if options is not last and options != last:
            args += options
            count = len(args)
            args.append(0)
            last = options
        args[count] = cast(int, args[count]) + 1
        args += (job_id, payload)
    return Call("enqueue", [keys.queued], args)


def not_replicated(queue: str, confirmed: int, replicas: int, timeout_ms: int) -> NotReplicated:
    return NotReplicated(f"queue {queue!r}: {confirmed} of {replicas} replica(s) confirmed the write within "
                         f"{timeout_ms / 1000:g}s; the jobs are written on the master but not acknowledged: a "
                         "failover now could lose them")  # fmt: skip


class NotReplicated(AiotaskqError, RedisError):
    """A queue with ``wait_replicas=N``: fewer than N replicas confirmed the enqueue within
    ``wait_timeout``. The job is written on the master, but a failover now could lose it:
    nothing acknowledged it. Enqueueing again with the same ``job_id`` is safe (deduplicated
    while the first is pending)."""


# The calls a queue with wait_replicas follows with WAIT, on the same connection: enqueues
# raise NotReplicated when the replicas do not confirm them; outcomes only log it (a lost
# outcome is a job run again, as after any lost write).
_DURABLE: Final = {"enqueue": True, "settle": False, "finish": False, "fail": False}


class Scripts:
    """The Lua scripts of one queue, bound to its keys and Redis client. ``wait`` (replicas,
    timeout in ms) makes enqueues and outcomes wait for that many replicas (WAIT)."""

    def __init__(self, redis: Redis, keys: Keys, wait: tuple[int, int] | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.wait = wait
        self._s: dict[str, AsyncScript] = {}

    def _script(self, name: str) -> AsyncScript:
        script = self._s.get(name)
        if script is None:
            script = self._s[name] = self.redis.register_script(source(name))
        return script

    async def _call(self, name: str, keys: list[str], args: list[Arg]) -> Any:
        return await self._script(name)(keys=keys, args=args)

    async def run(self, call: Call) -> Any:
        """Run one call (EVALSHA, loading the script on NOSCRIPT)."""
        if self.wait is not None and call.script in _DURABLE:
            [out] = await self.run_many([call])
            if isinstance(out, Exception):
                raise out
            return out
        return await self._script(call.script)(keys=call.keys, args=call.args)

    async def run_many(self, calls: list[Call]) -> list[Any]:
        """Run calls in one pipelined round trip; a failed call's slot holds its exception.

        Scripts missing from the server's cache (after a restart) are loaded and
        only the calls that hit NOSCRIPT run again, so no transition runs twice.
        With ``wait``, replication is judged once every call ran (see ``_replicated``).
        """
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        durable = self.wait is not None and any(c.script in _DURABLE for c in calls)
        confirmed: list[int] = []  # with durable: each round trip's WAIT answer, for the calls that ran in it
        ran: list[Call] = []
        for _ in range(3):
            missing, replicas = await self._round(calls, todo, results, durable)
            if durable and len(missing) < len(todo):
                if isinstance(replicas, Exception):
                    raise replicas
                confirmed.append(int(replicas))
                ran += [calls[i] for i in todo if i not in missing]
            if not missing:
                break
            if any(isinstance(results[i], MovedError) for i in missing):
                await self.redis.connection_pool.disconnect(inuse_connections=False)  # reconnect to the new master
            for name in {calls[i].script for i in missing if isinstance(results[i], NoScriptError)}:
                await self.redis.script_load(self._script(name).script)
            todo = missing
        if confirmed:
            self._replicated(min(confirmed), ran)
        return results

    async def _round(
        self, calls: list[Call], todo: list[int], results: list[Any], durable: bool
    ) -> tuple[list[int], Any]:
        """One pipelined round trip of the calls ``todo`` (and a WAIT when ``durable``): their
        results into ``results``; returns the calls to run again and the WAIT's answer."""
        pipe = self.redis.pipeline(transaction=False)
        for i in todo:
            c = calls[i]
            pipe.evalsha(self._script(c.script).sha, len(c.keys), *c.keys, *c.args)
        if durable:
            pipe.wait(*cast(tuple[int, int], self.wait))
        out = await pipe.execute(raise_on_error=False)
        replicas = out.pop() if durable else None
        missing = []
        for i, res in zip(todo, out, strict=True):
            results[i] = cluster_error(res) if isinstance(res, ResponseError) else res
            if self._run_again(results[i]):
                missing.append(i)
        return missing, replicas

    def _run_again(self, res: Any) -> bool:
        """Whether a call's result says it did not run and may run again: NOSCRIPT (the script
        is loaded first), or MOVED for the queue's own slot (its Master then names the new one)."""
        if isinstance(res, NoScriptError):
            return True
        if not isinstance(res, MovedError):
            return False
        master = self.redis.connection_pool.connection_kwargs.get("master")
        if master is not None and master.follows(int(res.slot_id)):
            master.moved(res.host, int(res.port))
            return True
        return False

    def _queue_name(self) -> str:
        return self.keys.prefix.split("{", 1)[-1].rsplit("}", 1)[0]

    def _replicated(self, confirmed: int, calls: list[Call]) -> None:
        """After WAIT (the fewest replicas any round trip's WAIT saw, once ``calls`` all ran):
        fewer replicas than asked is NotReplicated for enqueues, a warning for outcomes."""
        replicas, timeout_ms = cast(tuple[int, int], self.wait)
        if confirmed >= replicas:
            return
        if any(_DURABLE.get(c.script) for c in calls):
            raise not_replicated(self._queue_name(), confirmed, replicas, timeout_ms)
        what = f"{confirmed} of {replicas} replica(s) confirmed the write within {timeout_ms / 1000:g}s"
        log.warning("queue %r: %s (job outcomes: a failover now could lose them, and the jobs run again)",
                    self._queue_name(), what)  # fmt: skip

    # -- producer side -------------------------------------------------------------------------

    def enqueue(self, jobs: Iterable[EnqueueJob]) -> Call:
        """Enqueue jobs, each with its own option set (jobs in a row that share one are sent
        as a group). Returns one code per job: 1 written, 0 deduplicated."""
        return enqueue_call(self.keys, jobs)

    async def cancel(self, job_id: str, keep_ms: int, known: Sequence[tuple[str, int]] = ()) -> int:
        """``keep_ms``: of a job whose task is not in ``known`` (task name, keep ms) nor
        registered by the pools."""
        k = self.keys
        pairs = [x for name_keep in known for x in name_keep]
        return int(
            await self._call(
                "cancel",
                [k.job(job_id), k.scheduled, k.queued, k.cancelled, k.stats],
                [job_id, keep_ms, k.done(job_id), k.abort, k.prefix, *pairs],
            )
        )

    async def reschedule(self, job_id: str, *, delay: float | None, at_ms: int | None) -> int:
        k = self.keys
        return int(
            await self._call(
                "reschedule",
                [k.job(job_id), k.scheduled, k.queued, k.failed, k.cancelled, k.idle],
                [job_id, _ms(delay), "" if at_ms is None else at_ms, k.prefix],
            )
        )

    async def requeue_failed(self, ids: list[str], batch: int, offset: int = 0) -> tuple[int, int, int]:
        """requeue_failed.lua: (requeued, ids looked at, left failed)."""
        k = self.keys
        keys = [k.failed, k.queued, k.idle]
        n, seen, left = await self._call("requeue_failed", keys, [k.prefix, batch, offset, *ids])
        return int(n), int(seen), int(left)

    async def pause(self, on: bool) -> bool:
        """Pause (or resume) the queue: pause.lua; whether the state changed."""
        k = self.keys
        return bool(await self._call("pause", [k.paused, k.idle], ["1" if on else "0", k.prefix]))

    async def advance(self, ms: int) -> tuple[int, int]:
        """advance.lua (tests): waiting jobs and schedules' next runs become due ``ms`` sooner."""
        k = self.keys
        jobs, schedules = await self._call("advance", [k.scheduled, k.schedules_next, k.idle],
                                           [k.prefix, ms, k.schedules_wake])  # fmt: skip
        return int(jobs), int(schedules)

    async def delete(self, ids: list[str]) -> int:
        """Delete ended jobs by id (delete.lua); how many were deleted."""
        k = self.keys
        return int(await self._call("delete", [k.succeeded, k.failed, k.cancelled], [k.prefix, *ids]))

    async def purge(self, status: str, zset: str, batch: int) -> tuple[int, int]:
        taken, deleted = await self._call("purge", [zset], [self.keys.prefix, status, batch])
        return int(taken), int(deleted)

    async def layout_check(self) -> str:
        """The id of a job stored in the layout before the jobs hash, or '' (layout_check.lua)."""
        k = self.keys
        out = await self._call("layout_check", [k.queued], [k.prefix])
        return out.decode() if isinstance(out, bytes) else str(out)

    async def counts(self) -> list[int]:
        k = self.keys
        out = await self._call(
            "counts", [k.scheduled, k.queued, k.pools, k.succeeded, k.failed, k.cancelled], [k.prefix]
        )
        return [int(x) for x in out]

    # -- recurring schedules -------------------------------------------------------------------

    async def schedule_set(self, key: str, spec: bytes, next_ms: int | None) -> tuple[bool, int | None, int | None]:
        """Upsert a schedule: (written, stored next run ms, last tick ms); an unchanged spec keeps its next run."""
        k = self.keys
        changed, next_run, last = await self._call(
            "schedule_set",
            [k.schedules, k.schedules_next, k.schedules_last],
            [key, spec, "" if next_ms is None else next_ms, k.schedules_wake],
        )
        return bool(int(changed)), int(next_run) if next_run else None, int(last) if last else None

    async def unschedule(self, key: str) -> int:
        """Returns 1 when removed, 0 when there was no such schedule."""
        k = self.keys
        return int(await self._call("unschedule", [k.schedules, k.schedules_next, k.schedules_last], [key]))

    async def schedules_due(self, limit: int, offset: int) -> tuple[int, int, list[tuple[str, int, bytes]]]:
        """(Redis time ms, ms until the earliest next run to come or -1, [(key, next run ms, spec)] due)."""
        k = self.keys
        out = await self._call("schedules_due", [k.schedules_next, k.schedules], [limit, offset])
        body = out[2:]
        due = [(body[i].decode(), int(body[i + 1]), body[i + 2]) for i in range(0, len(body), 3)]
        return int(out[0]), int(out[1]), due

    def tick(
        self,
        key: str,
        seen_ms: int,
        spec: bytes,
        fire_ms: int | None,
        next_ms: int | None,
        *,
        job_id: str,
        task: str,
        payload: bytes,
        priority: int,
        overlap: bool = True,
    ) -> Call:
        """Run one tick. Returns 1 enqueued, 2 advanced without a job, 3 advanced without a job
        as the previous tick's is still pending (``overlap=False``), 0 stale, -1 too early
        (nothing written for 0 and -1)."""
        k = self.keys
        return Call(
            "tick",
            [k.schedules, k.schedules_next, k.schedules_last],
            [key, seen_ms, spec, "" if fire_ms is None else fire_ms, "" if next_ms is None else next_ms,
             job_id, task, payload, priority, k.prefix, "" if overlap else "1"],
        )  # fmt: skip

    # -- pool side -----------------------------------------------------------------------------

    async def claim(
        self, pool_id: str, want: int, *, register: bool = True, alive_ms: int = _ALIVE_MS, keep_ms: int = 86_400_000
    ) -> list[Any]:
        """Claim up to ``want`` jobs; the pool counts as alive ``alive_ms`` from now. A job past
        its expiry ends cancelled, kept ``keep_ms`` unless pools registered its task's."""
        k = self.keys
        return list(
            await self._call(
                "claim",
                [k.scheduled, k.queued, k.pools, k.pool(pool_id), k.idle, k.inbox(pool_id)],
                [pool_id, want, k.prefix, "1" if register else "0", alive_ms, keep_ms],
            )
        )

    async def reconcile(self, pool_id: str, known: list[str], *, leaving: bool) -> int:
        """Give back, uncharged, the jobs this pool holds but never started. Returns how many."""
        k = self.keys
        return int(
            await self._call(
                "reconcile",
                [k.pool(pool_id), k.inbox(pool_id), k.queued, k.idle],
                [k.prefix, pool_id, "1" if leaving else "0", *known],
            )
        )

    def finish(self, job_id: str, pool_id: str, attempt: int, status: str, result: bytes, keep_ms: int) -> Call:
        """End an attempt as succeeded or cancelled. Returns 1, or -1 when fenced out."""
        k = self.keys
        return Call(
            "finish",
            [k.job(job_id), k.pool(pool_id), k.ended(status), k.stats],
            [job_id, pool_id, attempt, status, result, keep_ms, k.done(job_id), k.prefix],
        )

    def fail(self, job_id: str, pool_id: str, attempt: int, error: str, tb: str, retry_ms: int) -> Call:
        """End an attempt with an error. Returns 2 retried, 3 failed, -1 fenced out."""
        k = self.keys
        return Call(
            "fail",
            [k.job(job_id), k.pool(pool_id), k.scheduled, k.failed, k.stats, k.idle],
            [job_id, pool_id, attempt, error, tb, retry_ms, k.done(job_id), k.prefix],
        )

    def settle(self, outcomes: list[Outcome]) -> Call:
        """End a batch of attempts in one call. Returns one code per outcome (as
        finish, fail and requeue return them)."""
        k = self.keys
        meta = _encoder.encode([(o.kind, o.id, o.pool_id, o.attempt, o.tb, o.n) for o in outcomes])
        return Call("settle", [k.scheduled, k.queued, k.succeeded, k.failed, k.cancelled, k.stats, k.idle],
                    [k.prefix, meta, *(o.data for o in outcomes)])  # fmt: skip

    def requeue(self, job_id: str, pool_id: str, attempt: int) -> Call:
        """Give back an attempt cut short by shutdown. Returns 1, or -1 when fenced out."""
        k = self.keys
        return Call("requeue", [k.job(job_id), k.pool(pool_id), k.queued, k.idle], [job_id, pool_id, attempt, k.prefix])

    async def heartbeat(
        self, pool_id: str, *, register: bool, info: str, ttl_ms: int, alive_ms: int = _ALIVE_MS
    ) -> list[Any]:
        k = self.keys
        return list(
            await self._call(
                "heartbeat",
                [k.pools, k.pool_info(pool_id), k.pool(pool_id)],
                [pool_id, "1" if register else "0", info, ttl_ms, k.prefix, alive_ms],
            )
        )

    async def presence(
        self, pool_id: str, alive_ms: int, record: str, grace_ms: int
    ) -> tuple[bool, list[tuple[str, str]]]:
        """A pool's tick (presence.lua): (registered, [(suspect pool id, its presence record)])."""
        k = self.keys
        out = await self._call("presence", [k.pools, k.alive, k.presence], [pool_id, alive_ms, record, grace_ms])
        body = out[1:]
        return bool(int(out[0])), [(body[i].decode(), body[i + 1].decode()) for i in range(0, len(body) - 1, 2)]

    async def leave(self, pool_id: str) -> int:
        k = self.keys
        return int(
            await self._call(
                "leave",
                [k.pools, k.pool_info(pool_id), k.pool(pool_id), k.idle, k.inbox(pool_id), k.alive, k.presence],
                [pool_id],
            )
        )

    async def reap(
        self, stale_ms: int, keep_ms: int, own_pool_id: str, *, suspects: list[str] | None = None, grace_ms: int = 0
    ) -> list[int]:
        """Reap pools silent for ``stale_ms``, and ``suspects`` (presence connection gone) past
        their alive time by ``grace_ms``: {pools reaped, jobs requeued, jobs failed}."""
        k = self.keys
        out = await self._call(
            "reap",
            [k.pools, k.queued, k.failed, k.cancelled, k.stats, k.idle],
            [k.prefix, stale_ms, keep_ms, own_pool_id, grace_ms, *(suspects or [])],
        )
        return [int(x) for x in out]

    async def progress(self, job_id: str, pool_id: str, attempt: int, value: float, note: str | None) -> int:
        """Store a running attempt's progress (0..1) and note. Returns 1, or -1 when fenced out."""
        k = self.keys
        return int(
            await self._call("progress", [k.job(job_id)], [pool_id, attempt, repr(value), note or "", job_id, k.prefix])
        )
