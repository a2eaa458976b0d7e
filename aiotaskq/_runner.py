"""A pool's work on one queue: claim loop, heartbeat, stale-pool reaper, aborts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

import anyio
from redis.exceptions import RedisError

from ._connection import ClusterUrlNeeded
from ._executor import Claimed, Executor
from ._finisher import Finisher
from ._outage import Outage
from ._presence import Presence
from ._record import claimed_row
from ._slots import Slots
from .errors import StorageLayoutError
from .queue import Queue


class PoolSide(Protocol):
    """What a QueueRunner uses of its pool (aiotaskq/pool.py's Pool is one): its settings, its
    worker slots, and the hand-off of a claimed job to a worker."""

    slots: Slots
    concurrency: int
    batch_size: int
    poll_interval: float
    heartbeat_interval: float
    stale_timeout: float
    crash_detection: bool

    def start_job(self, runner: QueueRunner, job: Claimed, *, reserved: bool = False) -> None: ...


log = logging.getLogger("aiotaskq")

_FIELDS = 7  # id, task, payload, attempts, retries, timeout, enqueue time (ms)
# A claim after a long wait for free slots (jobs that ended together, as a wave) goes out as
# two calls, the first for _CHUNK jobs: see QueueRunner._claim.
_CHUNK = 10
_SPLIT_AFTER = 0.002  # seconds


def new_pool_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class QueueRunner:
    """Everything a pool does for one queue. Its pool id changes if the pool
    was declared dead and registers afresh."""

    def __init__(self, pool: PoolSide, queue: Queue) -> None:
        self.pool = pool
        self.queue = queue
        self.pool_id = new_pool_id()
        self.executor = Executor(queue.tasks, queue.scripts, queue._keep_ms(None))
        self.finisher = Finisher(queue.scripts, self.claims_answered)
        self.presence = Presence(self, detect=pool.crash_detection)
        self.running: dict[str, Claimed] = {}
        self.started = time.time()
        self._next_reconcile = 0.0
        self._backlog = False
        self._claims_out = 0  # claim calls sent, not answered yet
        self._answered = asyncio.Event()
        self._reregistering = anyio.Lock()

    # -- registration and heartbeat ------------------------------------------------------------

    def _info(self) -> str:
        return json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "concurrency": self.pool.concurrency,
            "started": self.started, "running": len(self.running), "stale_timeout": self.pool.stale_timeout,
        })  # fmt: skip

    async def register(self, pool_id: str | None = None) -> None:
        """Register (retrying until Redis answers) and publish the tasks' default retries."""
        q = self.queue
        ttl = round(self.pool.stale_timeout * 2000)
        pool_id = pool_id or self.pool_id

        async def once() -> None:
            old = await q.scripts.layout_check()
            if old:
                raise StorageLayoutError(
                    f"queue {q.name!r} holds jobs stored by an earlier aiotaskq (job {old!r} is a hash of "
                    "its own; this version keeps waiting jobs in the queue's jobs hash): drain the queue "
                    "with the workers of that version, then start these (docs/architecture.md)"
                )
            if q.tasks:
                await q.redis.hset(q.keys.tasks, mapping={n: t.retries for n, t in q.tasks.items()})
                await q.redis.hset(q.keys.keep, mapping={n: q._keep_ms(t) for n, t in q.tasks.items()})
                await _publish_limits(q)
            await q.scripts.heartbeat(pool_id, register=True, info=self._info(), ttl_ms=ttl,
                                      alive_ms=self.presence.alive_ms)  # fmt: skip

        await retrying(once, f"registering pool on queue {q.name!r}")
        log.info("pool %s serving queue %r (%s)", pool_id, q.name, q.url)

    async def heartbeat(self) -> None:
        q = self.queue
        ttl = round(self.pool.stale_timeout * 2000)
        pool_id = self.pool_id
        out = await q.scripts.heartbeat(pool_id, register=False, info=self._info(), ttl_ms=ttl,
                                        alive_ms=self.presence.alive_ms)  # fmt: skip
        if int(out[0]) == 0:
            await self.declared_dead(pool_id)
            return
        for raw in out[1:]:
            job = self.running.get(raw.decode())
            if job is not None:
                job.stop("abort")

    async def declared_dead(self, dead_id: str) -> None:
        """Another pool reaped us: our attempts belong to nobody now. Stop them
        (their outcomes would be fenced out anyway) and register afresh.

        The heartbeat and the claim loop may both find out: the first registers a
        new id (and only then uses it), the other sees the id changed and returns."""
        async with self._reregistering:
            if dead_id != self.pool_id:
                return
            log.error(
                "pool %s was declared dead on queue %r (no heartbeat for %.0fs); stopping its %d job(s) "
                "and registering afresh",
                dead_id, self.queue.name, self.pool.stale_timeout, len(self.running),
            )  # fmt: skip
            for job in list(self.running.values()):
                job.stop("lost")
            new_id = new_pool_id()
            await self.register(new_id)
            self.pool_id = new_id

    async def reap(self, suspects: list[str] | None = None, grace_ms: int = 0) -> None:
        """Reap the pools silent for ``stale_timeout``, and the ``suspects`` (see Presence)."""
        stale_ms = round(self.pool.stale_timeout * 1000)
        pools, requeued, failed = await self.queue.scripts.reap(
            stale_ms, self.executor.keep_ms, self.pool_id, suspects=suspects, grace_ms=grace_ms
        )
        if pools:
            why = "connection closed, ticks missed" if suspects else f"silent for over {self.pool.stale_timeout:g}s"
            log.warning(
                "queue %r: reaped %d dead pool(s): %d job(s) requeued, %d failed (out of retries) (%s)",
                self.queue.name, pools, requeued, failed, why,
            )  # fmt: skip

    async def leave(self) -> None:
        with anyio.move_on_after(5):
            try:
                if not await self.queue.scripts.leave(self.pool_id):
                    log.warning("pool %s still holds jobs on %r; the reaper will requeue them", self.pool_id,
                                self.queue.name)  # fmt: skip
            except (RedisError, OSError) as exc:
                log.warning("could not unregister pool %s: %s", self.pool_id, exc)

    # -- pub/sub -------------------------------------------------------------------------------

    def on_abort(self, data: bytes | None) -> None:
        if data is None:  # reconnected: the next heartbeat catches up on missed aborts
            return
        job = self.running.get(data.decode())
        if job is not None:
            log.info("job %s: cancellation requested, stopping it", job.id)
            job.stop("abort")

    async def subscribe(self) -> None:
        listener = self.queue._listener_for_waiters()
        k = self.queue.keys

        async def once() -> None:
            await listener.subscribe(k.abort, self.on_abort)

        await retrying(once, f"subscribing to queue {self.queue.name!r}")

    async def unsubscribe(self) -> None:
        listener = self.queue._listener_for_waiters()
        await listener.unsubscribe(self.queue.keys.abort, self.on_abort)

    # -- claiming ------------------------------------------------------------------------------

    async def claim_loop(self) -> None:
        """Claim while there are free slots; when the queue runs dry, block on this
        pool's inbox (see claim.lua) until a job is handed over or a wake-up comes.
        When it stops, jobs handed over but not started go back to the queue."""
        try:
            await self._claim_loop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await self.reconcile(leaving=True)
                except (RedisError, OSError) as exc:
                    log.warning("could not give back jobs handed to pool %s: %s", self.pool_id, exc)

    async def _claim_loop(self) -> None:
        pool = self.pool
        outage = Outage(f"claim on queue {self.queue.name!r}")
        while True:
            try:
                if time.monotonic() >= self._next_reconcile:
                    await self.reconcile()
                waited = time.monotonic()
                free = await pool.slots.wait_free()
                waited = time.monotonic() - waited
                want = min(free, pool.batch_size)  # no await from here until _claim reserves the slots
                pool_id = self.pool_id
                with anyio.CancelScope(shield=True):
                    got, out, registered = await self._claim(pool_id, want, split=waited > _SPLIT_AFTER)
                if int(out[0]) == -1:
                    await self.declared_dead(pool_id)
                    continue
                if got < want and registered:
                    next_due_ms = int(out[1])
                    wait = pool.poll_interval if next_due_ms < 0 else min(pool.poll_interval, next_due_ms / 1000)
                    await self._wait_inbox(pool_id, wait, alarm=next_due_ms >= 0)
            except (RedisError, OSError) as exc:
                await anyio.sleep(outage.failed(exc))
                continue
            outage.ok()

    async def _claim(self, pool_id: str, want: int, *, split: bool) -> tuple[int, list[Any], bool]:
        """Claim up to ``want`` jobs and start them. Returns the jobs found, a reply (the
        one saying the pool is not registered, if any) and whether the pool's idle slots
        were registered (see claim.lua).

        The slots are reserved while the claim is out, so that another queue's claim loop
        does not claim them too. With ``split`` (the loop waited long for free slots: jobs
        that ended together, as a wave) and a backlog, the claim goes out as two concurrent
        calls, the first for ``_CHUNK`` jobs: those start while Redis still runs the second
        call, and the next wave's jobs end apart, not together. Split calls do not register
        idle slots: when they come back short, the loop claims again at once, in one call."""
        parts = 2 if split and self._backlog and want > _CHUNK else 1
        slots = self.pool.slots
        slots.reserve(want)
        self._claims_out += parts
        replies: list[list[Any]] = []
        started = 0

        async def call(size: int) -> None:
            nonlocal started
            try:
                out = await self.queue.scripts.claim(pool_id, size, register=parts == 1,
                                                     alive_ms=self.presence.alive_ms,
                                                     keep_ms=self.executor.keep_ms)  # fmt: skip
                replies.append(out)
                n, no_room = self._start_claimed(out, pool_id, size)
                started += n
            finally:  # after the jobs were handed to the workers: they run before the finisher
                self._claims_out -= 1
                if not self._claims_out:
                    self._answered.set()
            await self._give_back(no_room)

        try:
            if parts == 1:
                await call(want)
            else:
                sizes = [_CHUNK, want - _CHUNK]
                for result in await asyncio.gather(*map(call, sizes), return_exceptions=True):
                    if isinstance(result, BaseException):
                        raise result
        finally:
            slots.release(want - started)
        got = sum(_jobs_in(out) for out in replies)
        self._backlog = got >= want
        dead = [out for out in replies if int(out[0]) == -1]
        return got, (dead or replies)[0], parts == 1

    async def claims_answered(self) -> None:
        """Wait until the claim calls in flight are answered (see Finisher)."""
        if self._claims_out:
            self._answered.clear()
            await self._answered.wait()

    async def _wait_inbox(self, pool_id: str, wait: float, *, alarm: bool) -> None:
        """Block on the inbox for up to ``wait`` seconds; start a job handed over.

        Redis times out blocking pops only on its 100 ms clock tick, so a job due
        sooner is waited for here: at its due time an empty entry is pushed to the
        inbox, which ends the pop."""
        if wait <= 0:
            return
        q = self.queue
        inbox = q.keys.inbox(pool_id)
        if not alarm or wait >= self._block_cap:
            reply = await q.redis.blpop([inbox], timeout=min(wait, self._block_cap))
        else:
            failed: Exception | None = None  # raised outside the task group, not in an ExceptionGroup
            async with anyio.create_task_group() as tg:
                tg.start_soon(_push_after, q, inbox, wait)
                try:
                    reply = await q.redis.blpop([inbox], timeout=self._block_cap)
                except (RedisError, OSError) as exc:
                    failed = exc
                tg.cancel_scope.cancel()
            if failed is not None:
                raise failed
        rec = cast(bytes, reply[1]) if reply is not None else b""
        if rec:  # b"": a wake-up entry
            _, no_room = self._start_jobs([_inbox_row(rec)], pool_id, 0)
            await self._give_back(no_room)
            # Let the worker start the job before this loop packs and sends its next claim:
            # that is on the job's enqueue-to-start latency otherwise.
            await asyncio.sleep(0)

    @property
    def _block_cap(self) -> float:
        """Longest blocking pop: shorter than the client's socket timeout, which would
        otherwise take a quiet inbox for a dead connection."""
        timeout = self.queue.redis.connection_pool.connection_kwargs.get("socket_timeout")
        return 4.0 if not timeout else max(0.1, min(4.0, float(timeout) - 1.0))

    async def reconcile(self, *, leaving: bool = False) -> None:
        """Give back jobs Redis says this pool holds but the pool never started: a
        claim or inbox reply lost with the connection; with ``leaving``, also the jobs
        waiting in the inbox (the pool stops claiming). Runs between claims, so no
        claim of this runner is in flight; a job that ended meanwhile is fenced off."""
        self._next_reconcile = time.monotonic() + self.pool.heartbeat_interval
        known = [*self.running, *self.finisher.pending_ids]
        given_back = await self.queue.scripts.reconcile(self.pool_id, known, leaving=leaving)
        if given_back and not leaving:
            log.warning("queue %r: gave back %d job(s) claimed by a call whose reply was lost", self.queue.name,
                        given_back)  # fmt: skip
        elif given_back:
            log.info("queue %r: gave back %d job(s) handed to this pool but not started", self.queue.name, given_back)

    def _start_claimed(self, out: list[Any], pool_id: str, reserved: int) -> tuple[int, list[Claimed]]:
        """Start what a claim returned: records from the inbox, then claimed jobs."""
        handed = int(out[2])
        body = out[3 + handed :]
        rows = [_inbox_row(r) for r in out[3 : 3 + handed]]
        rows += [claimed_row(body[i], body[i + 1], body[i + 2]) for i in range(0, len(body) - 2, 3)]
        return self._start_jobs(rows, pool_id, reserved)

    def _start_jobs(self, rows: list[list[bytes]], pool_id: str, reserved: int) -> tuple[int, list[Claimed]]:
        """Start claimed jobs, the first ``reserved`` of them in slots reserved for them.
        Returns how many of those it started, and the jobs beyond them that found no free
        slot (handed over to a pool on several queues: it registers its free slots on each)."""
        no_room = []
        n = 0
        for job_id, task, payload, attempts, retries, timeout, enqueued, due in filter(None, rows):
            job = Claimed(
                id=job_id.decode(),
                task=task.decode("utf-8", "replace"),
                payload=payload,
                attempt=int(attempts),
                retries=_number(retries, int) or (0 if retries else self._task_retries(task)),
                timeout=_number(timeout, float) or self._task_timeout(task),
                pool_id=pool_id,
                enqueued_ms=enqueued,
                due_ms=due,
            )
            if n < reserved:
                n += 1
                self.pool.start_job(self, job, reserved=True)
            elif self.pool.slots.free > 0:
                self.pool.start_job(self, job)
            else:
                no_room.append(job)
        return n, no_room

    async def _give_back(self, jobs: list[Claimed]) -> None:
        """Give back, uncharged, jobs handed over that found no free slot. (Shielded: a job
        not given back would wait for the reconciliation.)"""
        if jobs:
            scripts = self.queue.scripts
            with anyio.CancelScope(shield=True):
                await scripts.run_many([scripts.requeue(j.id, j.pool_id, j.attempt) for j in jobs])

    def _task_retries(self, task: bytes) -> int:
        """Max retries of a job enqueued without them: its task's (what this pool registered)."""
        t = self.queue.tasks.get(task.decode("utf-8", "replace"))
        return t.retries if t is not None else 0

    def _task_timeout(self, task: bytes) -> float | None:
        t = self.queue.tasks.get(task.decode("utf-8", "replace"))
        return t.timeout if t is not None else None


def _jobs_in(out: list[Any]) -> int:
    """The jobs in a claim's reply: after 3 header fields, the handed records, one field
    each, then the claimed jobs, three fields each (id, attempt, record)."""
    handed = int(out[2])
    return handed + (len(out) - 3 - handed) // 3


def _inbox_row(rec: bytes) -> list[bytes]:
    """The fields of an inbox record, then its due time: '' (when enqueued), as the hand-off
    only ever gives a pool jobs due at once (see enqueue_job in _lib.lua)."""
    fields = _record_fields(rec)
    if fields:
        fields.append(b"")
    return fields


def _record_fields(rec: bytes) -> list[bytes]:
    """The fields of a job record from an inbox: each one is <length>:<bytes> (see _lib.lua).
    A record that does not parse (written by hand) yields no fields."""
    fields = []
    i = 0
    try:
        while i < len(rec):
            colon = rec.index(b":", i)
            end = colon + 1 + int(rec[i:colon])
            fields.append(rec[colon + 1 : end])
            i = end
    except ValueError:
        fields = []
    if len(fields) != _FIELDS or i != len(rec):
        log.error("dropped a malformed job record from an inbox: %r (the reconciliation gives its job back)", rec[:80])
        return []
    return fields


async def _push_after(queue: Queue, inbox: str, delay: float) -> None:
    await anyio.sleep(delay)
    with contextlib.suppress(RedisError, OSError):  # the pop fails on the same outage; the loop retries
        await queue.redis.rpush(inbox, "")


def _number(raw: bytes | None, kind: type[int] | type[float]) -> Any:
    """A numeric job field, or None when it is empty or not a positive number
    (a hash edited by hand must not crash the pool)."""
    try:
        value = kind(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


async def retrying(fn: Callable[[], Any], what: str) -> None:
    """Call ``fn`` until Redis answers, backing off (see _outage.py)."""
    outage = Outage(what)
    while True:
        try:
            await fn()
            outage.ok()
            return
        except ClusterUrlNeeded:
            raise  # a wrong URL: waiting does not fix it
        except (RedisError, OSError) as exc:
            await anyio.sleep(outage.failed(exc))


async def _publish_limits(q: Queue) -> None:
    """The rate limits and key concurrencies of the tasks this pool declares, for the claims
    (``limits`` hash: task -> 'N/period ms'; ``keylimits``: task -> K); a task declared without
    one loses the limit an older deploy set."""
    limited = {n: f"{t.rate_limit[0]}/{t.rate_limit[1]}" for n, t in q.tasks.items() if t.rate_limit}
    if limited:
        await q.redis.hset(q.keys.limits, mapping=limited)  # type: ignore[arg-type]
    free = [n for n, t in q.tasks.items() if not t.rate_limit]
    if free:
        await q.redis.hdel(q.keys.limits, *free)
    keyed = {n: t.key_concurrency for n, t in q.tasks.items() if t.key_concurrency}
    if keyed:  # the same for key_concurrency (``keylimits`` hash: task -> K)
        await q.redis.hset(q.keys.keylimits, mapping=keyed)  # type: ignore[arg-type]
    unkeyed = [n for n, t in q.tasks.items() if not t.key_concurrency]
    if unkeyed:
        await q.redis.hdel(q.keys.keylimits, *unkeyed)
