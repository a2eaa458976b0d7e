"""Runs one claimed job and turns what happened into the script call that records it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import traceback
import typing
from collections.abc import Coroutine
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import anyio
import msgspec

from ._limits import keep_ms
from ._scripts import Outcome, Scripts
from .context import JobContext, _current
from .errors import CorruptResult, JobCancelled, Retry, job_failed
from .hooks import AfterJob, BeforeJob, JobOutcome, OutcomeStatus, hook_name
from .hooks import call as call_hook
from .job import _WITH_META, GROUP_META, decode_payload, decode_typed_result, encode_result, payload_meta
from .task import Task

log = logging.getLogger("aiotaskq")

_MAX_ERROR = 4000
_MAX_TRACEBACK = 16000
_HOOK_GRACE = 2.0  # seconds after_job hooks may take when the pool itself is cancelled
_IN_HOOK: Any = object()  # JobContext._result while the before_job hooks run


@dataclass(slots=True, eq=False)
class Claimed:
    """A job this pool claimed: one attempt, fenced by (pool id, attempt)."""

    id: str
    task: str
    payload: bytes
    attempt: int
    retries: int
    timeout: float | None
    pool_id: str
    enqueued_ms: bytes = b""  # enqueue time, epoch ms as sent by the claim (parsed when asked for)
    due_ms: bytes = b""  # due time of this attempt (a delay, a retry's backoff), epoch ms; b"": when enqueued
    stop_reason: str | None = None  # "abort", "shutdown" or "lost" once cancelled by the pool
    worker: asyncio.Task[Any] | None = None  # the worker task while the attempt runs
    cancels: int = 0  # cancellations stop() sent to that task

    def stop(self, reason: str) -> None:
        """Stop the attempt: it is not started, or its task is cancelled. (A plain
        asyncio cancellation: an anyio CancelScope per job cost more than the job's
        bookkeeping.)

        An abort cancels once: the heartbeat repeats it while the job's cancel flag is
        set, and the task's clean-up (``finally:``) is left to finish, bounded by the
        job's timeout or the pool's shutdown. A shutdown or a lost attempt cancels on
        every call (the shutdown timeout passed, a second signal came), for a task that
        swallowed the first cancellation."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.worker is None or (reason == "abort" and self.cancels):
            return
        self.cancels += 1
        self.worker.cancel()


class _Stopped(Exception):
    """The pool stopped the attempt (``Claimed.stop``)."""


class _BadInput(Exception):
    """The job cannot run: its text becomes the job's error; no retry helps."""


class JobObserver(Protocol):
    """Watches a pool's attempts: ``Executor.observer`` (None by default: the job path then
    tests that one attribute, nothing more). ``aiotaskq.metrics`` is one; tracing can be another.

    ``job_started(job)`` is called as the attempt begins (before its arguments are decoded and
    its before_job hooks run), in the worker task that runs it, and what it returns is handed
    back to ``job_ended(job, status, token, error)`` once the attempt ended (after its after_job
    hooks), in the same task: ``status`` is what ``JobOutcome.status`` says, "succeeded",
    "retrying", "failed", "cancelled" or "interrupted" (the pool cut the attempt short:
    shutdown, lost, or the pool itself cancelled), and ``error`` what the attempt raised (None
    when nothing did). Both run on every job's path: keep them to a few plain operations. An
    error in them is logged and the job goes on."""

    def job_started(self, job: Claimed) -> Any: ...

    def job_ended(self, job: Claimed, status: OutcomeStatus, token: Any, error: BaseException | None) -> None: ...


class Executor:
    """Runs jobs of one queue's registry; builds the finishing call of each attempt."""

    def __init__(self, tasks: dict[str, Task[Any, Any]], scripts: Scripts, keep_ms: int) -> None:
        self.tasks = tasks
        self.scripts = scripts
        self.keep_ms = keep_ms
        self._params: dict[str, _Params] = {}
        # Set by the pool that runs this executor (Pool.run): what a job's context shows.
        self.queue_name = ""
        self.state = SimpleNamespace()
        self.before_job: tuple[BeforeJob, ...] = ()
        self.after_job: tuple[AfterJob, ...] = ()
        self.observer: JobObserver | None = None

    def run(self, job: Claimed) -> Coroutine[Any, Any, Outcome | None]:
        """Run one attempt (await what it returns); its outcome to record (None: drop it).
        The job's context (``current_job()``) is set while the attempt and its hooks run.
        (A plain method: a coroutine frame per job, to wrap the after_job hooks, cost more
        than the job's context; it is only there when there are such hooks.)"""
        ctx = JobContext(job, self)
        if self.observer is not None:
            return self._run_observed(job, ctx, self.observer)
        if self.after_job:
            return self._run_with_after_hooks(job, ctx)
        return self._attempt(job, ctx)

    async def _run_observed(self, job: Claimed, ctx: JobContext, observer: JobObserver) -> Outcome | None:
        """``run`` told to an observer (see JobObserver)."""
        token = None
        try:
            token = observer.job_started(job)
        except Exception:  # an observer's bug must not cost the job (nor the pool)
            log.exception("job observer %r failed on the start of job %s", observer, job.id)
        status: OutcomeStatus = "interrupted"  # unless it returns: the pool itself cancelled it
        try:
            outcome = await (self._run_with_after_hooks(job, ctx) if self.after_job else self._attempt(job, ctx))
            status = _status(job, outcome)
            return outcome
        finally:
            try:
                observer.job_ended(job, status, token, ctx._error)
            except Exception:
                log.exception("job observer %r failed on the end of job %s", observer, job.id)

    async def _run_with_after_hooks(self, job: Claimed, ctx: JobContext) -> Outcome | None:
        try:
            outcome = await self._attempt(job, ctx)
        except asyncio.CancelledError:  # the pool itself is cancelled: it gives the attempt back
            with anyio.CancelScope(shield=True), anyio.move_on_after(_HOOK_GRACE):
                await self._after(ctx, JobOutcome("interrupted"))
            raise
        await self._after(ctx, self._outcome_for_hooks(job, ctx, outcome))
        return outcome

    async def _attempt(self, job: Claimed, ctx: JobContext) -> Outcome | None:
        token = _current.set(ctx)
        try:
            task = self._task(job)
            if job.payload[:1] == _WITH_META and GROUP_META in (meta := payload_meta(job.payload)):
                args, kwargs = await self._callback_arguments(task, job, meta[GROUP_META])
            else:
                args, kwargs = self._arguments(task, job)
            if job.stop_reason is not None:  # stopped before it started: do not start it
                return self._stopped(job)
            try:
                result = await self._stoppable(task, job, args, kwargs)
            except _Stopped:
                return self._stopped(job)
            ctx._result = result
            return self._succeeded(task, job, result)
        except Retry as r:
            ctx._error = r
            return self._retry_requested(job, r)
        except _BadInput as exc:
            return self._fail(job, str(exc), "", None)
        except asyncio.CancelledError as exc:
            if _cancelled_from_outside():
                raise  # the pool itself is being cancelled: the caller gives the attempt back
            ctx._error = exc
            return self._raised(job, exc, " (raised by the task itself; the job was not cancelled)")
        except BaseException as exc:  # noqa: BLE001 - any error of the task ends its job: SystemExit,
            # KeyboardInterrupt and BaseException subclasses of its own too; none of them may stop the pool.
            ctx._error = exc
            return self._raised(job, exc, " (in a before_job hook)" if ctx._result is _IN_HOOK else "")
        finally:
            _current.reset(token)

    def _retry_requested(self, job: Claimed, r: Retry) -> Outcome:
        asked = r.seconds_from_now()
        delay = asked if asked is not None else self.tasks[job.task].backoff(job.attempt)
        text = f"Retry requested (delay {delay:.3f}s)"
        return self._fail(job, text, "", delay, out_of_retries="Retry requested but no retries are left")

    async def _stoppable(self, task: Task[Any, Any], job: Claimed, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the task so that ``job.stop()`` cancels it; raises _Stopped when it did."""
        job.worker = asyncio.current_task()
        try:
            result = await self._call(task, job, args, kwargs)
        except asyncio.CancelledError:
            if job.cancels and _withdraw(job):
                raise _Stopped from None
            raise
        except BaseException:
            if job.cancels:  # the worker task lives on: leave no cancellation of ours behind
                await _absorb_pending_cancel(job)
            raise
        finally:
            job.worker = None
        if job.cancels:  # stopped, but it returned first (or swallowed the cancellation): it succeeded
            await _absorb_pending_cancel(job)
        return result

    def _raised(self, job: Claimed, exc: BaseException, note: str = "") -> Outcome:
        """The attempt raised ``exc`` (called while handling it): retry or fail."""
        known = self.tasks.get(job.task)
        backoff = known.backoff(job.attempt) if known is not None else None
        return self._fail(job, _describe(exc) + note, _format_traceback(exc), backoff)

    def _task(self, job: Claimed) -> Task[Any, Any]:
        task = self.tasks.get(job.task)
        if task is None:
            raise _BadInput(f"UnknownTask: no task named {job.task!r} is registered in this worker")
        return task

    def _arguments(
        self, task: Task[Any, Any], job: Claimed, lead: list[Any] | None = None
    ) -> tuple[list[Any], dict[str, Any]]:
        try:
            args, kwargs = decode_payload(job.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _BadInput(f"BadPayload: the job's arguments could not be decoded: {exc}") from None
        params = self._params.get(task.name)
        if params is None:
            params = self._params[task.name] = _Params(task.fn)
        return params.convert(args if lead is None else [lead, *args], kwargs)

    async def _callback_arguments(
        self, task: Task[Any, Any], job: Claimed, spec: str
    ) -> tuple[list[Any], dict[str, Any]]:
        """A group's callback: its members' results (collected in gres:<id> by the scripts, see
        settle_dependents in _lib.lua) in call order, as its first argument. They are converted
        to its first parameter's annotation like any argument; with return_exceptions, a failed
        member's JobFailed (a cancelled one's JobCancelled) takes its place and the members'
        values come typed by their own tasks' return annotations instead."""
        try:
            group = json.loads(spec)
            members = [(str(i), str(t)) for i, t in group["members"]]
            errors = bool(group.get("errors"))
        except (ValueError, TypeError, KeyError) as exc:
            raise _BadInput(f"BadPayload: the group of this callback could not be read: {exc}") from None
        key = self.scripts.keys.prefix + "gres:" + job.id
        stored: list[bytes | None] = await self.scripts.redis.hmget(key, [i for i, _ in members])  # type: ignore[assignment]
        results: list[Any] = []
        for (member, name), raw in zip(members, stored, strict=True):
            if raw is None:
                raise _BadInput(f"GroupResultsMissing: no result of member {member!r} was found (deleted by hand?)")
            if raw[:1] == b"E":
                status, _, error = raw[1:].decode(errors="replace").partition("\n")
                results.append(JobCancelled(member) if status == "cancelled" else job_failed(member, error))
                continue
            known = self.tasks.get(name) if errors else None
            try:
                results.append(decode_typed_result(member, raw[1:], known._result_type if known else Any))
            except CorruptResult as exc:
                raise _BadInput(f"BadPayload: the result of member {member!r} could not be decoded: {exc}") from None
        if not errors:
            return self._arguments(task, job, results)
        args, kwargs = self._arguments(task, job, [])  # the errors fit no annotation: the list goes in as it is
        args[0] = results
        return args, kwargs

    async def _call(self, task: Task[Any, Any], job: Claimed, args: list[Any], kwargs: dict[str, Any]) -> Any:
        timeout = job.timeout
        if timeout is None:
            return await self._invoke(task, args, kwargs)
        try:
            async with asyncio.timeout(timeout):
                return await self._invoke(task, args, kwargs)
        except TimeoutError:
            raise TimeoutError(f"the job ran longer than its timeout of {timeout:g}s") from None

    async def _invoke(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.before_job:  # inside the attempt: its timeout and a cancellation apply to the hooks too
            await self._before()
        if task.is_async:
            return await task.fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(task.fn, *args, **kwargs), abandon_on_cancel=True)

    # -- hooks ---------------------------------------------------------------------------------

    async def _before(self) -> None:
        """The before_job hooks, in order. An error fails the attempt like an error of the
        task (the task does not run; the job is retried if it has retries left)."""
        ctx = _current.get()
        ctx._result = _IN_HOOK
        for hook in self.before_job:
            await call_hook(hook, ctx)
        ctx._result = None

    async def _after(self, ctx: JobContext, outcome: JobOutcome) -> None:
        """The after_job hooks, last registered first. An error is logged; the outcome stands."""
        token = _current.set(ctx)
        try:
            for hook in reversed(self.after_job):
                try:
                    await call_hook(hook, ctx, outcome)
                except Exception:  # a hook's error must not lose the job's outcome
                    log.exception("after_job hook %s failed for job %s (%s); the job's outcome (%s) stands",
                                  hook_name(hook), ctx.id, ctx.task, outcome.status)  # fmt: skip
        finally:
            _current.reset(token)

    def _outcome_for_hooks(self, job: Claimed, ctx: JobContext, out: Outcome | None) -> JobOutcome:
        status = _status(job, out)
        if status == "succeeded":
            return JobOutcome(status, result=ctx._result)
        if status == "retrying":
            assert out is not None
            return JobOutcome(status, error=ctx._error, retry_in=out.n / 1000)
        if status == "failed":
            return JobOutcome(status, error=ctx._error)
        return JobOutcome(status)

    def _succeeded(self, task: Task[Any, Any], job: Claimed, result: Any) -> Outcome:
        try:
            data = encode_result(result)
        except (TypeError, msgspec.EncodeError, OverflowError) as exc:
            raise _BadInput(f"BadResult: the task's return value cannot be encoded with msgpack: {exc}") from None
        limit = task.queue.max_result_bytes
        if len(data) > limit:
            raise _BadInput(
                f"BadResult: the encoded return value takes {len(data)} bytes, over max_result_bytes={limit}; "
                "store large data elsewhere and return a reference"
            )
        return Outcome("succeeded", job.id, job.pool_id, job.attempt, data, "", self._keep(task))

    def _keep(self, task: Task[Any, Any] | None) -> int:
        """Keep ms of an ended job: its task's keep_result, else the queue's."""
        return self.keep_ms if task is None or task.keep_result is None else keep_ms(task.keep_result)

    def _stopped(self, job: Claimed) -> Outcome | None:
        if job.stop_reason == "abort":
            keep = self._keep(self.tasks.get(job.task))
            return Outcome("cancelled", job.id, job.pool_id, job.attempt, b"", "", keep)
        if job.stop_reason == "shutdown":
            return Outcome("requeue", job.id, job.pool_id, job.attempt, b"", "", 0)
        return None  # lost: the attempt was taken from this pool; its outcome must not land

    def _fail(
        self, job: Claimed, error: str, tb: str, delay: float | None, out_of_retries: str | None = None
    ) -> Outcome:
        retry_ms = -1 if delay is None else round(delay * 1000)
        retrying = _will_retry(job, retry_ms)
        if out_of_retries is not None and not retrying:
            error = out_of_retries
        _log_failure(job, error, tb, retry_ms, requested=out_of_retries is not None)
        return Outcome(
            "fail", job.id, job.pool_id, job.attempt, _utf8(error[:_MAX_ERROR]), _utf8(tb[-_MAX_TRACEBACK:]), retry_ms
        )


def _status(job: Claimed, out: Outcome | None) -> OutcomeStatus:
    """How the attempt ended, as JobOutcome.status says it, from the outcome to record."""
    if out is None or out.kind == "requeue":
        return "interrupted"
    if out.kind == "fail":
        return "retrying" if _will_retry(job, out.n) else "failed"
    return "succeeded" if out.kind == "succeeded" else "cancelled"


def _will_retry(job: Claimed, retry_ms: int) -> bool:
    """Whether fail.lua will schedule a retry for this failed attempt (as it decides)."""
    return retry_ms >= 0 and job.attempt <= job.retries


def _log_failure(job: Claimed, error: str, tb: str, retry_ms: int, *, requested: bool) -> None:
    """A failure that will be retried at INFO, saying when: the queue is doing what it was
    told, and a WARNING per retried job would flood the logs (and cost every job a write)
    when a dependency hiccups at 50,000 jobs/s. A final failure at ERROR, with its traceback:
    that one needs a person."""
    total = max(job.retries + 1, job.attempt)
    this = f"job {job.id} ({job.task}) attempt {job.attempt} of {total}"
    if _will_retry(job, retry_ms):
        if requested:
            log.info("%s asked for a retry; retrying in %.1fs (attempt %d of %d)", this, retry_ms / 1000,
                     job.attempt + 1, total)  # fmt: skip
        else:
            log.info("%s failed: %s; retrying in %.1fs (attempt %d of %d)", this, error, retry_ms / 1000,
                     job.attempt + 1, total)  # fmt: skip
        return
    if retry_ms < 0 and not requested:
        why = "not retried: it cannot run as stored"
    else:
        why = f"out of retries (retries={job.retries})"
    log.error("%s failed, %s; the job is now failed: %s%s", this, why, error, "\n" + tb.rstrip() if tb else "")


def _withdraw(job: Claimed) -> bool:
    """Take back the cancellations ``stop()`` sent to the job's task; True when no
    other cancellation (the pool's own) is pending on it."""
    task = asyncio.current_task()
    assert task is not None
    for _ in range(job.cancels):
        task.uncancel()
    job.cancels = 0
    return task.cancelling() == 0


async def _absorb_pending_cancel(job: Claimed) -> None:
    """A stop's cancellation that the task never saw would hit the worker's next
    await: take it there. Another cancellation pending still propagates."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if not _withdraw(job):
            raise
        return
    if not _withdraw(job):
        raise asyncio.CancelledError


def _cancelled_from_outside() -> bool:
    """Whether a cancellation exception caught in a job is a real cancellation of
    the running task (the pool or its caller cancelling it), rather than one the
    task raised by itself (``raise CancelledError()``, a cancelled future awaited)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio (trio): a Cancelled is always real
        return True
    return task is None or task.cancelling() > 0


def _format_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it, less the ``^^^^`` markers: Python 3.11 parses
    each frame's source to place them, which cost the pool half its time on failing jobs."""
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
        if frame.line:
            lines.append(f"    {frame.line.strip()}\n")
    lines.extend(traceback.format_exception_only(exc))
    return "".join(lines)


def _utf8(text: str) -> str:
    """Text Redis and msgpack accept: lone surrogates (undecodable bytes) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class _Params:
    """A task's signature, used to check and convert decoded arguments to the
    annotated types (a msgspec Struct or a dataclass arrives as a dict)."""

    def __init__(self, fn: Any) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable annotations: skip conversion
            hints = {}
        self.types: dict[str, tuple[inspect._ParameterKind, Any]] = {
            name: (p.kind, hints[name])
            for name, p in self.signature.parameters.items()
            if name in hints and hints[name] is not Any
        }
        # Positional arguments only, to a plain signature (the common case): no bind() needed,
        # which cost more than the rest of starting a no-op job.
        params = list(self.signature.parameters.values())
        self.plain: tuple[int, list[tuple[str, tuple[inspect._ParameterKind, Any] | None]]] | None = None
        if all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            required = sum(1 for p in params if p.default is p.empty)
            self.plain = (required, [(p.name, self.types.get(p.name)) for p in params])

    def convert(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        plain = self.plain
        if plain is not None and not kwargs and plain[0] <= len(args) <= len(plain[1]):
            for i, (name, spec) in enumerate(plain[1][: len(args)]):
                if spec is not None:
                    args[i] = self._convert_one(name, spec, args[i])
            return args, {}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise _BadInput(f"BadArguments: the arguments do not fit the task's signature: {exc}") from None
        if self.types:
            for name, value in bound.arguments.items():
                spec = self.types.get(name)
                if spec is not None:
                    bound.arguments[name] = self._convert_one(name, spec, value)
        return list(bound.args), dict(bound.kwargs)

    def _convert_one(self, name: str, spec: tuple[inspect._ParameterKind, Any], value: Any) -> Any:
        kind, tp = spec
        try:
            if kind is inspect.Parameter.VAR_POSITIONAL:
                return tuple(msgspec.convert(v, tp) for v in value)
            if kind is inspect.Parameter.VAR_KEYWORD:
                return {k: msgspec.convert(v, tp) for k, v in value.items()}
            if type(value) is tp:
                return value
            return msgspec.convert(value, tp)
        except (msgspec.ValidationError, TypeError) as exc:
            raise _BadInput(f"BadArguments: argument {name!r}: {exc}") from None
