"""Starlette: the lifespan opens the queue, hands it to every request as lifespan state
(``request.state.queue``) and closes it at shutdown. ``GET /jobs/{id}?wait=N`` shows a handler
that waits a bounded time for a job's result (on pub/sub, without polling) before it answers.

Serve it with ``uvicorn docs.examples.frameworks.starlette_app:app``; run its jobs with
``python -m aiotaskq worker docs.examples.frameworks.starlette_app:queue``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiotaskq import JobCancelled, JobFailed, JobNotFound, Queue

queue = Queue("thumbnails")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0

MAX_WAIT = 10.0  # seconds a request may hold its connection waiting for a result


@queue.task(timeout=60)
async def make_thumbnail(path: str, width: int) -> str:
    return f"{path.rsplit('.', 1)[0]}-{width}px.webp"  # resize the image here


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    async with queue:  # closes the client and its pub/sub connection when the app stops
        await queue.redis.ping()  # connect now: a wrong URL fails the start-up, not the first request
        yield {"queue": queue}  # lifespan state: every request sees it as request.state.queue


async def create_thumbnail(request: Request) -> JSONResponse:
    body = await request.json()
    job = await make_thumbnail.enqueue(str(body["path"]), int(body["width"]))
    return JSONResponse({"job_id": job.id}, status_code=202)


async def job_result(request: Request) -> JSONResponse:
    q: Queue = request.state.queue
    job = q.job(request.path_params["job_id"])
    wait = min(float(request.query_params.get("wait", 0)), MAX_WAIT)
    try:
        if wait > 0:
            # Subscribes to the job's end, then reads it, then waits: it returns as soon as a
            # worker finishes the job. Not done in time, failed or cancelled: the info says which.
            with contextlib.suppress(TimeoutError, JobFailed, JobCancelled):
                await job.result(timeout=wait)
        info = await job.info()
    except JobNotFound:
        return JSONResponse({"detail": "no such job"}, status_code=404)
    body = {"status": info.status.value, "result": info.result, "error": info.error}
    return JSONResponse(body, status_code=200 if info.status.is_final else 202)


app = Starlette(
    routes=[Route("/thumbnails", create_thumbnail, methods=["POST"]), Route("/jobs/{job_id}", job_result)],
    lifespan=lifespan,
)
