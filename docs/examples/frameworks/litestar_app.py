"""Litestar: a lifespan context manager opens the queue, puts it on ``app.state`` and closes it
at shutdown; handlers ask for it by name (``queue: NamedDependency[Queue]``) through Litestar's
dependency injection (``Provide``), so a test or another app can provide a different one.

Serve it with ``uvicorn docs.examples.frameworks.litestar_app:app``; run its jobs with
``python -m aiotaskq worker docs.examples.frameworks.litestar_app:queue``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from aiotaskq import JobNotFound, Queue

queue = Queue("reports")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0


@queue.task(timeout=300)
async def build_report(account: int, period: str) -> dict[str, Any]:
    return {"account": account, "period": period, "rows": 42}  # the slow part goes here


@asynccontextmanager
async def open_queue(app: Litestar) -> AsyncIterator[None]:
    async with queue:  # closes the client and its pub/sub connection when the app stops
        await queue.redis.ping()  # connect now: a wrong URL fails the start-up, not the first request
        app.state.queue = queue
        yield


def provide_queue(state: State) -> Queue:
    """The queue the lifespan opened, for any handler with a ``queue`` parameter."""
    opened: Queue = state.queue
    return opened


@dataclass
class ReportRequest:
    account: int
    period: str


@post("/reports", status_code=202)
async def request_report(data: JSONBody[ReportRequest]) -> dict[str, str]:
    job = await build_report.enqueue(data.account, data.period)  # stored before the response goes out
    return {"job_id": job.id}


@get("/jobs/{job_id:str}")
async def report_status(job_id: FromPath[str], queue: NamedDependency[Queue]) -> dict[str, Any]:
    try:
        info = await queue.job(job_id).info()
    except JobNotFound:
        raise NotFoundException(f"no job {job_id}") from None
    return {"status": info.status.value, "attempts": info.attempts, "result": info.result}


app = Litestar(
    route_handlers=[request_report, report_status],
    dependencies={"queue": Provide(provide_queue, sync_to_thread=False)},  # a cheap lookup: no thread
    lifespan=[open_queue],
)
