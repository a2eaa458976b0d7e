"""The Pool: one task group that claims jobs from queues and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import RedisError

from . import hooks
from ._connection import ClusterUrlNeeded
from ._executor import Claimed
from ._monitor import watch_event_loop
from ._runner import QueueRunner
from ._scheduler import Scheduler
from ._slots import Slots
from .errors import StorageLayoutError
from .hooks import AfterJob, BeforeJob
from .queue import Queue

log = logging.getLogger("aiotaskq")

Hook = Callable[["Pool"], Awaitable[None] | None]


class Pool:
    """Claims due jobs from one or more queues and runs up to ``concurrency`` at once.

    ``run()`` serves until cancelled, ``stop()``, SIGTERM or SIGINT. On stop it
    claims nothing more, waits up to ``shutdown_timeout`` seconds for running
    jobs, then cancels the rest and requeues them without charging an attempt.

    With ``crash_detection`` (the default), a pool whose process died (its Redis
    connections closed, its ticks missed) is reaped within about two seconds, not
    after ``stale_timeout``: see docs/reliability.md.
    Hooks (``on_startup``/``on_shutdown`` with the pool, ``before_job``/``after_job``
    with the job's context) come from these parameters and from the queues'
    decorators (``@queue.on_startup``...); see ``aiotaskq.hooks``. ``state`` is a
    namespace for what the startup hooks open; tasks reach it as ``current_job().state``.
    ``loop`` is the event loop ``run()`` serves on while it runs (None otherwise): for code
    in other threads that must reach the pool's queues (``aiotaskq.metrics``).
    """

    def __init__(
        self,
        queues: Queue | Sequence[Queue],
        *,
        concurrency: int = 10,
        batch_size: int | None = None,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        stale_timeout: float = 30.0,
        shutdown_timeout: float = 30.0,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        crash_detection: bool = True,
        before_job: BeforeJob | None = None,
        after_job: AfterJob | None = None,
    ) -> None:
        self.queues = [queues] if isinstance(queues, Queue) else list(queues)
        if not self.queues:
            raise ValueError("queues: give at least one queue")
        if len({q.name for q in self.queues}) != len(self.queues):
            raise ValueError("queues: each queue may appear once")
        _positive("concurrency", concurrency)
        _positive("poll_interval", poll_interval)
        _positive("heartbeat_interval", heartbeat_interval)
        if stale_timeout <= heartbeat_interval * 2:
            raise ValueError(
                f"stale_timeout: must be more than twice heartbeat_interval ({heartbeat_interval}), got {stale_timeout}"
            )
        if shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout: must be >= 0, got {shutdown_timeout}")
        self.concurrency = concurrency
        self.batch_size = _positive("batch_size", batch_size) if batch_size is not None else concurrency
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_timeout = stale_timeout
        self.shutdown_timeout = shutdown_timeout
        for name, fn in (("on_startup", on_startup), ("on_shutdown", on_shutdown), ("before_job", before_job),
                         ("after_job", after_job)):  # fmt: skip
            if fn is not None:
                hooks.check_hook(name, fn)
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.crash_detection = crash_detection
        self.before_job = before_job
        self.after_job = after_job
        #: A namespace for resources the startup hooks create (``pool.state.http = ...``);
        #: tasks reach it as ``current_job().state``.
        self.state = SimpleNamespace()
        self._started_up = False
        self._startup_error: Exception | None = None
        self.slots = Slots(concurrency)
        # One runner per queue, or per shard of a sharded queue: its claim loop, heartbeat, reaper...
        self.runners = [QueueRunner(self, part) for q in self.queues for part in q.parts]
        self.schedulers = [Scheduler(part, poll_interval) for q in self.queues for part in q.parts]
        self._dispatch: asyncio.Queue[tuple[QueueRunner, Claimed] | None] | None = None
        self._starting: anyio.CancelScope | None = None
        self._claiming: anyio.CancelScope | None = None
        self._liveness: anyio.CancelScope | None = None
        self._stop_requested = False
        self._idle = asyncio.Event()
        self._running = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def pool_ids(self) -> list[str]:
        """This pool's id on each of its queues (each shard of a sharded one)."""
        return [r.pool_id for r in self.runners]

    def stop(self) -> None:
        """Ask the pool to shut down gracefully (safe to call from its own tasks)."""
        self._stop_requested = True
        for scope in (self._starting, self._claiming):
            if scope is not None:
                scope.cancel()

    async def run(self) -> None:
        """Serve until cancelled, ``stop()``, SIGTERM or SIGINT."""
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, self.concurrency)  # plain-function tasks
        self.loop = asyncio.get_running_loop()
        try:
            await self._run()
        finally:
            self.loop = None

    async def _run(self) -> None:
        async with anyio.create_task_group() as background:
            # Signals first: a SIGTERM while Redis is still unreachable stops the pool cleanly.
            if threading.current_thread() is threading.main_thread():
                background.start_soon(self._signal_loop)
            for r in self.runners:
                background.start_soon(r.finisher.run)
            try:
                with anyio.CancelScope() as self._starting:
                    if self._stop_requested:
                        self._starting.cancel()
                    try:
                        for r in self.runners:
                            await r.register()
                            await r.subscribe()
                    except (StorageLayoutError, ClusterUrlNeeded) as exc:  # run() raises it once the pool has left
                        self._startup_error = exc
                        self.stop()
                    else:
                        await self._startup()
                self._starting = None
                if self._startup_error is None:
                    await self._first_presence()
                    self._start_loops(background)
                await self._serve()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close(background)
        if self._startup_error is not None:
            raise self._startup_error

    async def _first_presence(self) -> None:
        """One presence tick per queue before the first claim, so that a pool that dies right
        after it took jobs is already known by its connection and reaped within seconds, not
        after ``stale_timeout`` (an error is left to the presence loop to report)."""
        for r in self.runners:
            with contextlib.suppress(Exception):
                await r.presence.tick_once()

    def _start_loops(self, background: TaskGroup) -> None:
        """The loops of a registered pool: liveness, presence, schedules, the event-loop watch."""
        background.start_soon(self._liveness_loop)
        for r in self.runners:
            background.start_soon(r.presence.run)
        for s in self.schedulers:
            background.start_soon(s.run)
        background.start_soon(watch_event_loop, self.stale_timeout)

    async def _serve(self) -> None:
        jobs: asyncio.Queue[tuple[QueueRunner, Claimed] | None] = asyncio.Queue()
        async with anyio.create_task_group() as workers:
            # `concurrency` long-lived worker tasks: a task per job costs more than the job's bookkeeping.
            for i in range(self.concurrency):
                workers.start_soon(self._worker, jobs, name=f"aiotaskq worker {i}")
            self._dispatch = jobs
            with anyio.CancelScope() as claiming:
                self._claiming = claiming
                if self._stop_requested:
                    claiming.cancel()
                async with anyio.create_task_group() as claims:
                    for r in self.runners:
                        claims.start_soon(r.claim_loop)
            log.info("pool stopping: waiting up to %.1fs for %d running job(s)%s", self.shutdown_timeout,
                     self._running, self._running_jobs())  # fmt: skip
            with anyio.move_on_after(self.shutdown_timeout):
                while self._running:
                    self._idle.clear()
                    await self._idle.wait()
            self._log_cut_short()
            for r in self.runners:
                for job in list(r.running.values()):
                    job.stop("shutdown")
            for _ in range(self.concurrency):
                jobs.put_nowait(None)  # the workers finish what is buffered (requeueing it), then return

    async def _close(self, background: TaskGroup) -> None:
        await self._requeue_unstarted()
        for r in self.runners:
            r.finisher.close()
        with anyio.move_on_after(max(5.0, self.shutdown_timeout)):
            for r in self.runners:
                await r.finisher.done.wait()
        for r in self.runners:
            if r.finisher.pending:
                log.error("%d job outcome(s) on %r could not be written; the reaper will requeue those jobs",
                          r.finisher.pending, r.queue.name)  # fmt: skip
        if self._liveness is not None:
            self._liveness.cancel()  # a heartbeat after leaving would find the pool gone and register it afresh
        for r in self.runners:
            await r.leave()
            await r.unsubscribe()
        try:
            await self._shutdown()
        finally:
            background.cancel_scope.cancel()
            log.info("pool stopped")

    async def _requeue_unstarted(self) -> None:
        """Claimed jobs that no worker started (the pool was cancelled) go back, uncharged."""
        for r in self.runners:
            left = list(r.running.values())
            if not left:
                continue
            scripts = r.queue.scripts
            with anyio.move_on_after(5):
                try:
                    await scripts.run_many([scripts.requeue(j.id, j.pool_id, j.attempt) for j in left])
                    log.info("requeued %d claimed job(s) that never started", len(left))
                except (RedisError, OSError) as exc:
                    log.warning("could not requeue %d claimed job(s): %s", len(left), exc)

    # -- hooks ---------------------------------------------------------------------------------

    async def _startup(self) -> None:
        """Give each queue's executor the per-job hooks and the state, then run the
        startup hooks: the pool's own, then each queue's, in the order declared. On an
        error the pool stops before it claims anything, and ``run()`` raises it."""
        for r in self.runners:
            h = hooks.hooks_of(r.queue._root)
            r.executor.queue_name = r.queue.name
            r.executor.state = self.state
            r.executor.before_job = tuple(hooks.gather(self.before_job, h.before_job))
            r.executor.after_job = tuple(hooks.gather(self.after_job, h.after_job))
        for hook in hooks.gather(self.on_startup, (fn for q in self.queues for fn in hooks.hooks_of(q).on_startup)):
            try:
                await hooks.call(hook, self)
            except Exception as exc:  # noqa: BLE001 - user code; run() raises it once the pool has left
                self._startup_error = exc
                self.stop()
                return
        self._started_up = True

    async def _shutdown(self) -> None:
        """The shutdown hooks, in the reverse order, when the startup hooks all ran. An
        error is logged, and the other hooks still run."""
        if not self._started_up:
            return
        found = hooks.gather(self.on_shutdown, (fn for q in self.queues for fn in hooks.hooks_of(q).on_shutdown))
        for hook in reversed(found):
            try:
                await hooks.call(hook, self)
            except Exception:  # a hook's error must not stop the others (the pool stops anyway)
                log.exception("on_shutdown hook %s failed", hooks.hook_name(hook))

    def _running_jobs(self, limit: int = 5) -> str:
        """``: <id> (<task>), ...`` for the jobs running now (plain functions marked), or ''."""
        running = [(r, j) for r in self.runners for j in r.running.values()]
        parts = []
        for r, job in running[:limit]:
            task = r.queue.tasks.get(job.task)
            parts.append(f"{job.id} ({job.task}{'' if task is None or task.is_async else ', a plain function'})")
        more = f" and {len(running) - limit} more" if len(running) > limit else ""
        return f": {', '.join(parts)}{more}" if parts else ""

    def _log_cut_short(self) -> None:
        """After the shutdown timeout: say which jobs are cut short, and which of them
        keep a thread busy (Python cannot interrupt a plain function's thread)."""
        if not self._running:
            return
        log.warning("shutdown timeout (%.1fs) reached: cancelling %d job(s) and handing them back%s",
                    self.shutdown_timeout, self._running, self._running_jobs())  # fmt: skip
        for r in self.runners:
            for job in r.running.values():
                task = r.queue.tasks.get(job.task)
                if task is not None and not task.is_async:
                    log.warning(
                        "job %s (%s) is a plain function: its thread cannot be interrupted and runs on until "
                        "the function returns; the process exits only then", job.id, job.task,
                    )  # fmt: skip

    # -- jobs ----------------------------------------------------------------------------------

    def start_job(self, runner: QueueRunner, job: Claimed, *, reserved: bool = False) -> None:
        """Hand a claimed job to a worker, in a free slot or in one reserved for it."""
        assert self._dispatch is not None
        if not reserved:
            self.slots.take()
        self._running += 1
        runner.running[job.id] = job
        self._dispatch.put_nowait((runner, job))

    async def _worker(self, jobs: asyncio.Queue[tuple[QueueRunner, Claimed] | None]) -> None:
        while (item := await jobs.get()) is not None:
            await self._run_job(*item)

    async def _run_job(self, runner: QueueRunner, job: Claimed) -> None:
        try:
            outcome = await runner.executor.run(job)
        except asyncio.CancelledError:
            # The pool itself is being cancelled: give the attempt back, uncharged.
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await runner.queue.scripts.run(runner.queue.scripts.requeue(job.id, job.pool_id, job.attempt))
                except (RedisError, OSError) as exc:
                    log.warning("could not requeue job %s on cancellation: %s", job.id, exc)
            raise
        finally:
            runner.running.pop(job.id, None)
            self._running -= 1
            self.slots.give()
            if not self._running:
                self._idle.set()
        if outcome is not None:
            runner.finisher.submit(outcome)

    # -- background loops ----------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        """Heartbeat, then look for dead pools, on every queue, every heartbeat_interval.

        The heartbeat comes first so that after an outage this pool never finds
        itself stale and reaps its own jobs."""
        with anyio.CancelScope() as self._liveness:
            while True:
                await anyio.sleep(self.heartbeat_interval)
                for r in self.runners:
                    try:
                        await r.heartbeat()
                        await r.reap()
                    except (RedisError, OSError) as exc:
                        log.warning("heartbeat on queue %r failed: %s", r.queue.name, exc)

    async def _signal_loop(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self._stop_requested:
                    log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
                    self.stop()
                else:
                    log.warning("received %s again: cancelling running jobs now", signal.Signals(signum).name)
                    for r in self.runners:
                        for job in list(r.running.values()):
                            job.stop("shutdown")


def _positive(name: str, value: float) -> Any:
    if not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")
    return value
