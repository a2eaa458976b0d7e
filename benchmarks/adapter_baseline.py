"""References for the HTTP benchmark only, not job queues (``benchmarks/http_app.py``): the same
endpoint without its enqueue line, to show what the web stack alone serves (``baseline``); and the
same endpoint awaiting one no-op future in place of the enqueue (``awaited``), to show what any
awaited call, however cheap, costs that stack (the handler suspends and resumes); and the same
endpoint awaiting one raw PING to Redis (``roundtrip``), to show what waiting on the network at
all costs it: the least any Redis-backed enqueue could cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

from .adapter import System, TaskName


class Baseline(System):
    name: ClassVar[str] = "baseline"
    packages: ClassVar[tuple[str, ...]] = ("fastapi", "starlette", "pydantic", "uvicorn", "httptools")
    knobs: ClassVar[str] = (
        "a reference for the HTTP benchmark only (see benchmarks/http_app.py): the same FastAPI endpoint "
        "without the enqueue line, answering a counter as the job id"
    )
    workloads: ClassVar[frozenset[str] | None] = frozenset({"http"})

    async def open(self, url: str, queue: str) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(self, task: TaskName, i: int) -> str:
        raise NotImplementedError("the baseline enqueues nothing")

    async def waiting(self) -> int:
        return 0

    async def unfinished(self) -> int:
        return 0

    async def outcomes(self) -> dict[str, int]:
        return {}

    async def serve(self, concurrency: int, ready: Callable[[], None], stop: asyncio.Event) -> None:
        raise NotImplementedError("the baseline has no worker")


class Awaited(Baseline):
    name: ClassVar[str] = "awaited"
    knobs: ClassVar[str] = (
        "a reference for the HTTP benchmark only (see benchmarks/http_app.py): the same FastAPI endpoint, "
        "awaiting one future that the event loop resolves at once in place of the enqueue line"
    )


class Roundtrip(Baseline):
    name: ClassVar[str] = "roundtrip"
    knobs: ClassVar[str] = (
        "a reference for the HTTP benchmark only (see benchmarks/http_app.py): the same FastAPI endpoint, "
        "awaiting one PING to Redis on a bare asyncio stream shared by all requests (pipelined, no client "
        "library) in place of the enqueue line: the least any round trip to Redis costs the endpoint"
    )
