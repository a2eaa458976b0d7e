"""Hooks: code a pool runs around its own life (``on_startup``/``on_shutdown``) and
around each job (``before_job``/``after_job``), and the outcome ``after_job`` is given.

Hooks come from two places: ``Pool(..., on_startup=..., before_job=...)``, and the
decorators of each queue (``@queue.on_startup``, ``@queue.before_job``), which every
pool serving that queue picks up, the CLI's worker included. Each hook may be a plain
function or a coroutine function; plain ones run on the event loop, so keep them short.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from .context import JobContext
    from .pool import Pool
    from .queue import Queue

log = logging.getLogger("aiotaskq")

#: ``hook(pool)``: ``on_startup`` and ``on_shutdown``.
PoolHook: TypeAlias = "Callable[[Pool], Awaitable[None] | None]"
#: ``hook(ctx)``: ``before_job``, with the job's context.
BeforeJob: TypeAlias = "Callable[[JobContext], Awaitable[None] | None]"
#: ``hook(ctx, outcome)``: ``after_job``.
AfterJob: TypeAlias = "Callable[[JobContext, JobOutcome], Awaitable[None] | None]"

PoolHookT = TypeVar("PoolHookT", bound=PoolHook)
BeforeJobT = TypeVar("BeforeJobT", bound=BeforeJob)
AfterJobT = TypeVar("AfterJobT", bound=AfterJob)

OutcomeStatus: TypeAlias = Literal["succeeded", "retrying", "failed", "cancelled", "interrupted"]


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How an attempt ended, as ``after_job`` sees it (before it is recorded).

    ``status`` is one of:

    - ``"succeeded"``: ``result`` is the task's return value;
    - ``"retrying"``: the attempt failed (``error``: the exception, a ``Retry`` included)
      and the job runs again in ``retry_in`` seconds;
    - ``"failed"``: the attempt failed and the job is out of retries (``error`` is None
      for a job that could not start: unknown task, undecodable or wrong arguments);
    - ``"cancelled"``: the job was cancelled while it ran;
    - ``"interrupted"``: the pool cut the attempt short (a graceful shutdown, or the pool
      lost the job after being declared dead); it runs again, elsewhere or later.
    """

    status: OutcomeStatus
    result: Any = None
    error: BaseException | None = None
    retry_in: float | None = None


@dataclass(slots=True)
class Hooks:
    """The hooks registered on one queue (see ``Queue.on_startup`` and the others)."""

    on_startup: list[PoolHook] = field(default_factory=list)
    on_shutdown: list[PoolHook] = field(default_factory=list)
    before_job: list[BeforeJob] = field(default_factory=list)
    after_job: list[AfterJob] = field(default_factory=list)


_registry: WeakKeyDictionary[Queue, Hooks] = WeakKeyDictionary()


def hooks_of(queue: Queue) -> Hooks:
    """The hooks registered on ``queue`` (created empty on first use)."""
    hooks = _registry.get(queue)
    if hooks is None:
        hooks = _registry[queue] = Hooks()
    return hooks


def check_hook(name: str, fn: Any) -> None:
    if not callable(fn):
        raise ValueError(f"{name}: expected a function or a coroutine function, got {fn!r}")


def gather(own: Any, registered: Iterable[Any]) -> list[Any]:
    """The pool's own hook (if any) first, then the queues' ones, each function once."""
    out: list[Any] = [] if own is None else [own]
    for fn in registered:
        if fn not in out:
            out.append(fn)
    return out


async def call(hook: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    """Call a hook, awaiting it when it is a coroutine function (or returns an awaitable)."""
    out = hook(*args)
    if inspect.isawaitable(out):
        await out


def hook_name(hook: Any) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
