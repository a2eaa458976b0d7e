"""The interface a queue system implements to be benchmarked, and the probe its tasks call.

Every system runs the same three tasks, defined in its adapter module the way the system
wants them (systems that take plain coroutine functions use ``noop``, ``sleep`` and ``flaky``
below):

- ``noop(i)``: ``PROBE.start(i)`` then ``PROBE.end()``;
- ``sleep(i)``: ``PROBE.start(i)``, ``await asyncio.sleep(0.01)``, ``PROBE.end()``;
- ``flaky(i)``: fails its first attempt (``PROBE.first_attempt(i)`` is true: raise the
  system's retry exception, or a plain error where the system retries those), then runs
  like ``noop``.

The probe lives in the worker process. It notes when the first job started, when each
job started (only when asked to, for the latency workload), how many ended and how
many attempts failed on purpose, so the harness measures every system the same way,
from outside its internals.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import importlib.util
import time
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Literal, TypeVar

from redis.asyncio import Redis

T = TypeVar("T")
TaskName = Literal["noop", "sleep", "flaky"]
TASKS: tuple[TaskName, ...] = ("noop", "sleep", "flaky")
SLEEP_SECONDS = 0.01


class FlakyError(Exception):
    """What ``flaky`` raises on its first attempt, in systems that retry plain exceptions."""


class Probe:
    """What the benchmark tasks of the worker process report (one per process)."""

    def __init__(self) -> None:
        self.record = False
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.starts: dict[int, float] = {}
        self.done = 0
        self.failed_on_purpose: set[int] = set()

    def configure(self, *, record: bool) -> None:
        self.record = record

    def start(self, i: int) -> None:
        t = time.time()
        if self.first_start is None:
            self.first_start = t
        if self.record:
            self.starts[i] = t

    def end(self) -> None:
        self.done += 1
        self.last_end = time.time()

    def first_attempt(self, i: int) -> bool:
        """True the first time job ``i`` runs in this process: ``flaky`` must fail then."""
        if self.first_start is None:
            self.first_start = time.time()
        if i in self.failed_on_purpose:
            return False
        self.failed_on_purpose.add(i)
        return True


PROBE = Probe()


# The three tasks as plain coroutine functions, for systems whose tasks are plain functions of
# ``i`` (a system with its own retry exception writes its own ``flaky``).
async def noop(i: int) -> None:
    PROBE.start(i)
    PROBE.end()


async def sleep(i: int) -> None:
    PROBE.start(i)
    await asyncio.sleep(SLEEP_SECONDS)
    PROBE.end()


async def flaky(i: int) -> None:
    if PROBE.first_attempt(i):
        raise FlakyError(i)
    PROBE.start(i)
    PROBE.end()


class System(abc.ABC):
    """One queue system, used as its documentation recommends.

    An instance serves one queue on one Redis. The producer side (``enqueue``,
    ``enqueue_batch``, the counts) runs in the per-repetition subprocess; ``serve``
    runs in a worker subprocess. Any knob changed from the system's defaults belongs
    in ``knobs`` so the report can name it.
    """

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]  # distributions whose versions the report shows
    knobs: ClassVar[str] = "defaults"
    batch_api: ClassVar[str] = ""  # the system's batch enqueue, when it has one ("" = none)

    @property
    def has_batch(self) -> bool:
        return bool(self.batch_api)

    @abc.abstractmethod
    async def open(self, url: str, queue: str) -> None:
        """Connect to Redis and define the ``noop``, ``sleep`` and ``flaky`` tasks on ``queue``."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    #: the workloads this system runs (None: all of them)
    workloads: ClassVar[frozenset[str] | None] = None

    @abc.abstractmethod
    async def enqueue(self, task: TaskName, i: int) -> str:
        """Enqueue one job with the system's plain one-job API, as a user would: the job's id."""

    async def enqueue_batch(self, task: TaskName, items: list[int]) -> None:
        """Enqueue many jobs with the system's batch API (only called when ``batch_api`` is set)."""
        raise NotImplementedError(f"{self.name} has no batch enqueue")

    @abc.abstractmethod
    async def waiting(self) -> int:
        """How many jobs of this queue wait for a worker (cheap)."""

    @abc.abstractmethod
    async def unfinished(self) -> int:
        """How many jobs of this queue Redis does not yet record as ended: waiting, running or
        waiting to be retried (cheap: polled every few ms while a worker drains)."""

    @abc.abstractmethod
    async def outcomes(self) -> dict[str, int]:
        """How many jobs of this queue Redis records in each end state, at least under "succeeded"
        (exact; may scan every key, so called once a run). Keys starting with "not ended" count
        jobs the system still holds; "other queues" what a shared key space holds besides."""

    async def succeeded(self) -> int:
        return (await self.outcomes()).get("succeeded", 0)

    @abc.abstractmethod
    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        """Run one worker at ``concurrency`` until ``stop`` is set; call ``ready`` once it serves."""


SYSTEMS: dict[str, str] = {
    "aiotaskq": "benchmarks.adapter_aiotaskq:Aiotaskq",
    "arq": "benchmarks.adapter_arq:Arq",
    "saq": "benchmarks.adapter_saq:Saq",
    "streaq": "benchmarks.adapter_streaq:Streaq",
    "taskiq": "benchmarks.adapter_taskiq:Taskiq",
    "floor": "benchmarks.adapter_floor:Floor",
    "baseline": "benchmarks.adapter_baseline:Baseline",
    "awaited": "benchmarks.adapter_baseline:Awaited",
    "roundtrip": "benchmarks.adapter_baseline:Roundtrip",
}
#: systems that are references, not peers: never the "best peer" a target is measured against
REFERENCES: frozenset[str] = frozenset({"floor", "baseline", "awaited", "roundtrip"})
#: the import that must work for a system to run (its adapter imports it)
REQUIRES: dict[str, tuple[str, ...]] = {
    "aiotaskq": ("aiotaskq",),
    "arq": ("arq",),
    "saq": ("saq", "croniter"),
    "streaq": ("streaq",),
    "taskiq": ("taskiq", "taskiq_redis"),
    "floor": ("redis",),
    "baseline": ("fastapi", "uvicorn"),
    "awaited": ("fastapi", "uvicorn"),
    "roundtrip": ("fastapi", "uvicorn"),
}


def installed(name: str) -> bool:
    """Whether the packages of system ``name`` can be imported in this interpreter."""
    return all(importlib.util.find_spec(module) is not None for module in REQUIRES[name])


def runs(name: str, workload: str) -> bool:
    """Whether system ``name`` takes part in ``workload`` (the HTTP ``baseline`` in ``http`` only)."""
    only = system_class(name).workloads
    return only is None or workload in only


def system_class(name: str) -> type[System]:
    """The system registered under ``name``, imported on demand (a peer's package may be missing)."""
    try:
        target = SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}") from None
    module, _, attr = target.partition(":")
    cls: type[System] = getattr(importlib.import_module(module), attr)
    return cls


def load_system(name: str) -> System:
    """A fresh instance of the system registered under ``name``."""
    return system_class(name)()


async def tally(url: str, pattern: str, classify: Callable[[bytes], str], batch: int = 1000) -> dict[str, int]:
    """Keys matching ``pattern`` counted by what ``classify`` says of each value (SCAN + MGET):
    for systems that record each job's outcome as a key of its own."""
    counts: dict[str, int] = {}

    def add(vals: list[Any]) -> None:  # bytes, or None for a key gone since the SCAN
        for v in vals:
            if v is not None:
                kind = classify(v)
                counts[kind] = counts.get(kind, 0) + 1

    async with Redis.from_url(url) as r:
        keys: list[bytes] = []
        async for key in r.scan_iter(match=pattern, count=batch):
            keys.append(key)
            if len(keys) >= batch:
                add(await r.mget(keys))
                keys = []
        if keys:
            add(await r.mget(keys))
    return counts


def run(main: Coroutine[Any, Any, T], *, uvloop: bool) -> T:
    """``asyncio.run(main)``, on a uvloop event loop when asked: every process of a run uses the same."""
    if not uvloop:
        return asyncio.run(main)
    import uvloop as uv  # type: ignore[import-not-found, unused-ignore]  # in the bench extra

    with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
        return runner.run(main)
