"""A pool's recurring-schedule loop on one queue.

Every pool runs one per queue; they agree through Redis alone. Each round reads the
due schedules and the server time (``schedules_due.lua``), plans each tick with the
pure functions of ``cron.py``, and fires it with ``tick.lua``, which enqueues the job
and advances the next run only if the schedule still holds the next run this pool
saw: one pool wins each tick, the others' calls change nothing. Between rounds the
loop sleeps until the earliest next run, at most ``poll_interval``, and wakes at once
when a schedule is added or changed (``schedules:wake`` channel).
"""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import msgspec
from redis.exceptions import RedisError

from ._outage import Outage
from ._runner import retrying
from .cron import Plan, plan
from .job import _Wakeup
from .queue import Queue
from .schedule import Spec, declared, decode_spec, job_id, redis_now_ms, upsert

log = logging.getLogger("aiotaskq")

#: Due schedules planned and fired per round (one pipelined round trip).
BATCH: Final = 100

_FIRED, _ADVANCED, _STALE, _EARLY, _OVERLAP = 1, 2, 0, -1, 3
_EARLY_RETRY_MS: Final = 10


class Scheduler:
    """Fires the due ticks of one queue's schedules."""

    def __init__(self, queue: Queue, poll_interval: float) -> None:
        self.queue = queue
        self.poll_interval = poll_interval
        self.wakeup = _Wakeup()
        self.fired = 0  # ticks whose job this scheduler enqueued
        self.lost = 0  # ticks another pool fired first
        self.skipped = 0  # ticks not run: the previous one's job was still pending (overlap=False)
        self._unreadable: set[tuple[str, bytes]] = set()

    async def run(self) -> None:
        """Upsert the schedules declared in code, then fire ticks until cancelled."""
        q = self.queue
        await retrying(self.declare, f"declaring the schedules of queue {q.name!r}")
        listener = q._listener_for_waiters()

        async def subscribe() -> None:
            await listener.subscribe(q.keys.schedules_wake, self.wakeup)

        await retrying(subscribe, f"subscribing to the schedules of queue {q.name!r}")
        try:
            await self._loop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await listener.unsubscribe(q.keys.schedules_wake, self.wakeup)

    async def _loop(self) -> None:
        outage = Outage(f"scheduler on queue {self.queue.name!r}")
        while True:
            try:
                wait = await self.step()
                outage.ok()
            except (RedisError, OSError) as exc:
                wait = outage.failed(exc)
            if wait > 0:
                await self.wakeup.wait(min(wait, self.poll_interval))

    async def declare(self) -> None:
        """Upsert the schedules declared with ``@queue.task(cron=...)``/``(every=...)``
        (an unchanged one keeps its next run)."""
        items = declared(self.queue)
        if not items:
            return
        now = await redis_now_ms(self.queue)
        for key, spec in items:
            info = await upsert(self.queue, key, spec, now_ms=now)
            log.info("schedule %r on queue %r: %s, next run %s", key, self.queue.name, info.spec,
                     info.next_run.isoformat() if info.next_run else "none")  # fmt: skip
            task = self.queue.tasks.get(key)
            if task is not None and task.run_at_startup:
                await self._run_at_startup(key, spec)

    async def _run_at_startup(self, key: str, spec: Spec) -> None:
        """One run of a ``run_at_startup`` task as the pool starts; pools starting together make one
        (its id is deduplicated while the job is pending)."""
        job = await self.queue._root.enqueue(spec.task, job_id=f"schedule:{key}:startup", priority=spec.priority)
        if job is not None:
            log.info("schedule %r on queue %r: run at startup as job %s", key, self.queue.name, job.id)

    async def step(self) -> float:
        """Fire one batch of due ticks; returns how long to sleep in seconds (0: look again at once)."""
        q = self.queue
        now, next_in, due = await q.scripts.schedules_due(BATCH, random.getrandbits(31))
        planned: list[tuple[str, int, Spec, Plan]] = []
        calls = []
        for key, seen, raw in due:
            out = self._plan(key, seen, raw, now)
            if out is None:
                continue
            spec, p = out
            jid = job_id(key, p.fire_ms) if p.fire_ms is not None else ""
            calls.append(q.scripts.tick(key, seen, raw, p.fire_ms, p.next_ms, job_id=jid, task=spec.task,
                                        payload=spec.payload, priority=spec.priority,
                                        overlap=spec.overlap))  # fmt: skip
            planned.append((key, seen, spec, p))
        soonest = next_in if next_in >= 0 else math.inf  # ms, from the server's now
        if not calls:
            return self.poll_interval if due else soonest / 1000  # due: only schedules this pool cannot read
        results = await q.scripts.run_many(calls)
        for (key, seen, spec, p), res in zip(planned, results, strict=True):
            self._report(key, spec, seen, p, res)
            if isinstance(res, Exception):
                soonest = min(soonest, self.poll_interval * 1000)
            elif res == _EARLY:
                soonest = min(soonest, _EARLY_RETRY_MS)
            elif p.next_ms is not None:  # the next run we (or a pool that won the tick) stored
                soonest = min(soonest, p.next_ms - now)
        if len(due) == BATCH:
            return 0.0  # a full batch: more may be due
        return max(soonest, 0) / 1000  # 0 for a backlog still due (misfire="all")

    def _plan(self, key: str, seen: int, raw: bytes, now: int) -> tuple[Spec, Plan] | None:
        try:
            spec = decode_spec(raw)
            return spec, plan(spec.rule, seen, now)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            if (key, raw) not in self._unreadable:
                self._unreadable.add((key, raw))
                log.error("schedule %r on queue %r cannot be read by this pool (%s); pools that can read it "
                          "will fire it", key, self.queue.name, exc or "no spec stored")  # fmt: skip
            return None

    def _report(self, key: str, spec: Spec, seen: int, p: Plan, res: Any) -> None:
        name = self.queue.name
        if isinstance(res, Exception):
            log.warning("schedule %r on queue %r: tick %s failed: %s", key, name, _iso(seen), res)
            return
        code = int(res)
        if code == _STALE:
            self.lost += 1
            return
        if code == _EARLY:
            return
        if code == _OVERLAP:
            self.skipped += 1
            log.warning("schedule %r on queue %r: tick %s skipped: the previous tick's job is still pending "
                        "(overlap=False)", key, name, _iso(p.fire_ms))  # fmt: skip
            return
        if p.fire_ms != seen:
            done = f"ran tick {_iso(p.fire_ms)}" if p.fire_ms is not None else "skipped them"
            log.warning("schedule %r on queue %r missed ticks from %s (misfire=%r): %s", key, name, _iso(seen),
                        spec.rule.misfire, done)  # fmt: skip
        if code == _FIRED:
            self.fired += 1
            assert p.fire_ms is not None
            log.debug("schedule %r on queue %r: enqueued job %s (%s) for tick %s", key, name,
                     job_id(key, p.fire_ms), spec.task, _iso(p.fire_ms))  # fmt: skip
        elif p.fire_ms is not None:
            log.warning("schedule %r on queue %r: job %s is still pending; tick %s not enqueued again", key,
                        name, job_id(key, p.fire_ms), _iso(p.fire_ms))  # fmt: skip
        if p.next_ms is None:
            log.info("schedule %r on queue %r has ended (no tick after its end_at)", key, name)


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") if ms is not None else "-"
