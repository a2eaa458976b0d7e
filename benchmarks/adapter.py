"""The interface a queue system implements to be benchmarked, and the probe its tasks call.

Every system runs the same two tasks, written once per system in its adapter module:

- ``noop(i)``: ``PROBE.start(i)`` then ``PROBE.end()``;
- ``sleep(i)``: ``PROBE.start(i)``, ``await asyncio.sleep(0.01)``, ``PROBE.end()``.

The probe lives in the worker process. It notes when the first job started, when
each job started (only when asked to, for the latency workload) and how many ended,
so the harness measures every system the same way, from outside its internals.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import time
from collections.abc import Callable
from typing import ClassVar, Literal

TaskName = Literal["noop", "sleep"]
TASKS: tuple[TaskName, ...] = ("noop", "sleep")
SLEEP_SECONDS = 0.01


class Probe:
    """What the benchmark tasks of the worker process report (one per process)."""

    def __init__(self) -> None:
        self.expect = 0
        self.record = False
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.starts: dict[int, float] = {}
        self.done = 0
        self.all_done = asyncio.Event()

    def configure(self, *, expect: int, record: bool) -> None:
        self.expect = expect
        self.record = record

    def start(self, i: int) -> None:
        t = time.time()
        if self.first_start is None:
            self.first_start = t
        if self.record:
            self.starts[i] = t

    def end(self) -> None:
        self.done += 1
        if self.done >= self.expect and self.last_end is None:
            self.last_end = time.time()
            self.all_done.set()


PROBE = Probe()


class System(abc.ABC):
    """One queue system, used as its documentation recommends.

    An instance serves one queue on one Redis. The producer side (``enqueue``,
    ``enqueue_batch``, ``succeeded``, ``waiting``) runs in the per-repetition
    subprocess; ``serve`` runs in the worker subprocess. Any knob changed from the
    system's defaults belongs in ``knobs`` so the report can name it.
    """

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]  # distributions whose versions the report shows
    knobs: ClassVar[str] = "defaults"
    has_batch: ClassVar[bool] = False  # True when enqueue_batch uses a batch API of the system

    @abc.abstractmethod
    async def open(self, url: str, queue: str) -> None:
        """Connect to Redis and define the ``noop`` and ``sleep`` tasks on ``queue``."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def enqueue(self, task: TaskName, i: int) -> None:
        """Enqueue one job, one round trip, as a user would."""

    async def enqueue_batch(self, task: TaskName, items: list[int]) -> None:
        """Enqueue many jobs with the system's batch API; plain ``enqueue`` calls when it has none."""
        for i in items:
            await self.enqueue(task, i)

    @abc.abstractmethod
    async def succeeded(self) -> int:
        """How many jobs of this queue Redis records as succeeded."""

    @abc.abstractmethod
    async def waiting(self) -> int:
        """How many jobs of this queue wait for a worker."""

    @abc.abstractmethod
    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        """Run one worker at ``concurrency`` until ``stop`` is set; call ``ready`` once it serves."""


SYSTEMS: dict[str, str] = {
    "aiotaskq": "benchmarks.adapter_aiotaskq:Aiotaskq",
}


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
