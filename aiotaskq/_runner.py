"""A pool's work on one queue: claim loop, heartbeat, stale-pool reaper, aborts."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from ._executor import Claimed, Executor
from ._finisher import Finisher
from .job import _Wakeup
from .queue import Queue

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger("aiotaskq")

_FIELDS = 6  # id, task, payload, attempts, retries, timeout


def new_pool_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class QueueRunner:
    """Everything a pool does for one queue. Its pool id changes if the pool
    was declared dead and registers afresh."""

    def __init__(self, pool: Pool, queue: Queue) -> None:
        self.pool = pool
        self.queue = queue
        self.pool_id = new_pool_id()
        self.executor = Executor(queue.tasks, queue.scripts, queue._keep_ms(None))
        self.finisher = Finisher(queue.scripts)
        self.running: dict[str, Claimed] = {}
        self.wakeup = _Wakeup()
        self.started = time.time()
        self._next_reconcile = 0.0
        self._reregistering = anyio.Lock()

    # -- registration and heartbeat ------------------------------------------------------------

    def _info(self) -> str:
        return json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "concurrency": self.pool.concurrency,
            "started": self.started, "running": len(self.running),
        })  # fmt: skip

    async def register(self, pool_id: str | None = None) -> None:
        """Register (retrying until Redis answers) and publish the tasks' default retries."""
        q = self.queue
        ttl = round(self.pool.stale_timeout * 2000)
        pool_id = pool_id or self.pool_id

        async def once() -> None:
            if q.tasks:
                await q.redis.hset(q.keys.tasks, mapping={n: t.retries for n, t in q.tasks.items()})
            await q.scripts.heartbeat(pool_id, register=True, info=self._info(), ttl_ms=ttl)

        await retrying(once, f"registering pool on queue {q.name!r}")
        log.info("pool %s serving queue %r (%s)", pool_id, q.name, q.url)

    async def heartbeat(self) -> None:
        q = self.queue
        ttl = round(self.pool.stale_timeout * 2000)
        pool_id = self.pool_id
        out = await q.scripts.heartbeat(pool_id, register=False, info=self._info(), ttl_ms=ttl)
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

    async def reap(self) -> None:
        stale_ms = round(self.pool.stale_timeout * 1000)
        pools, requeued, failed = await self.queue.scripts.reap(stale_ms, self.executor.keep_ms, self.pool_id)
        if pools:
            log.warning(
                "queue %r: reaped %d dead pool(s): %d job(s) requeued, %d failed (out of retries)",
                self.queue.name, pools, requeued, failed,
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

    def on_wake(self, data: bytes | None) -> None:
        self.wakeup(data)

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
            await listener.subscribe(k.wake, self.on_wake)
            await listener.subscribe(k.abort, self.on_abort)

        await retrying(once, f"subscribing to queue {self.queue.name!r}")

    async def unsubscribe(self) -> None:
        listener = self.queue._listener_for_waiters()
        await listener.unsubscribe(self.queue.keys.wake, self.on_wake)
        await listener.unsubscribe(self.queue.keys.abort, self.on_abort)

    # -- claiming ------------------------------------------------------------------------------

    async def claim_loop(self) -> None:
        pool = self.pool
        delay = 0.05
        while True:
            free = await pool.slots.wait_free()
            want = min(free, pool.batch_size)
            pool_id = self.pool_id
            try:
                if time.monotonic() >= self._next_reconcile:
                    await self.reconcile()
                with anyio.CancelScope(shield=True):
                    out = await self.queue.scripts.claim(pool_id, want)
                    jobs = self._start(out, pool_id)
            except (RedisError, OSError) as exc:
                log.warning("claim on queue %r failed (%s); retrying in %.2fs", self.queue.name, exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            if int(out[0]) == -1:
                await self.declared_dead(pool_id)
                continue
            if jobs == want:
                continue
            next_due_ms = int(out[1])
            wait = pool.poll_interval if next_due_ms < 0 else min(pool.poll_interval, next_due_ms / 1000)
            await self.wakeup.wait(wait)

    async def reconcile(self) -> None:
        """Give back jobs Redis says this pool holds but the pool never started: a
        claim whose reply was lost with the connection. Runs between claims, so no
        claim of this runner is in flight; a job that ended meanwhile is fenced off."""
        self._next_reconcile = time.monotonic() + self.pool.heartbeat_interval
        q, pool_id = self.queue, self.pool_id
        held: set[bytes] = await q.redis.smembers(q.keys.pool(pool_id))  # type: ignore[assignment]
        orphans = [m.decode() for m in held]
        orphans = [i for i in orphans if i not in self.running and i not in self.finisher.pending_ids]
        if not orphans:
            return
        pipe = q.redis.pipeline(transaction=False)
        for job_id in orphans:
            pipe.hget(q.keys.job(job_id), "attempts")
        attempts = await pipe.execute()
        calls = [q.scripts.requeue(i, pool_id, int(a or 0)) for i, a in zip(orphans, attempts, strict=True)]
        given_back = sum(1 for r in await q.scripts.run_many(calls) if r == 1)
        if given_back:
            log.warning("queue %r: gave back %d job(s) claimed by a call whose reply was lost", q.name, given_back)

    def _start(self, out: list[Any], pool_id: str) -> int:
        body = out[2:]
        n = len(body) // _FIELDS
        for i in range(0, n * _FIELDS, _FIELDS):
            job_id, task, payload, attempts, retries, timeout = body[i : i + _FIELDS]
            job = Claimed(
                id=job_id.decode(),
                task=task.decode("utf-8", "replace"),
                payload=payload,
                attempt=int(attempts),
                retries=_number(retries, int) or 0,
                timeout=_number(timeout, float) or self._task_timeout(task),
                pool_id=pool_id,
            )
            self.pool.start_job(self, job)
        return n

    def _task_timeout(self, task: bytes) -> float | None:
        t = self.queue.tasks.get(task.decode("utf-8", "replace"))
        return t.timeout if t is not None else None


def _number(raw: bytes | None, kind: type[int] | type[float]) -> Any:
    """A numeric job field, or None when it is empty or not a positive number
    (a hash edited by hand must not crash the pool)."""
    try:
        value = kind(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


async def retrying(fn: Callable[[], Any], what: str) -> None:
    """Call ``fn`` until Redis answers, backing off (0.05 s doubling to 5 s)."""
    delay = 0.05
    while True:
        try:
            await fn()
            return
        except (RedisError, OSError) as exc:
            log.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
