"""FastAPI: the lifespan opens the queue and closes it at shutdown, and handlers get it by
dependency injection (``QueueDep``), so a test can swap it with ``app.dependency_overrides``.

Serve it with ``uvicorn docs.examples.frameworks.fastapi_app:app``; run its jobs with
``python -m aiotaskq worker docs.examples.frameworks.fastapi_app:queue``. In a real project the
queue and its tasks live in a module of their own (``app/tasks.py``), which both import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from aiotaskq import JobNotFound, JobStatus, Queue

queue = Queue("signups")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0


@queue.task(retries=3)
async def send_welcome(user_id: int, address: str) -> str:
    return f"welcome mail sent to {address}"  # call your mail provider here


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    async with queue:  # closes the client and its pub/sub connection when the app stops
        await queue.redis.ping()  # connect now: a wrong URL fails the start-up, not the first request
        yield {"queue": queue}  # lifespan state: every request sees it as request.state.queue


def get_queue(request: Request) -> Queue:
    """The queue the lifespan opened (a dependency: tests override it)."""
    opened: Queue = request.state.queue
    return opened


QueueDep = Annotated[Queue, Depends(get_queue)]
app = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    user_id: int
    email: str


@app.post("/signups", status_code=202)
async def signup(body: Signup) -> dict[str, str]:
    # The typed call: the arguments are checked against send_welcome's signature, and the job
    # is stored in Redis before the response goes out.
    job = await send_welcome.enqueue(body.user_id, body.email)
    return {"job_id": job.id}


@app.get("/jobs/{job_id}")
async def job_status(job_id: str, queue: QueueDep) -> dict[str, Any]:
    job = queue.job(job_id)  # a handle from an id: no Redis call yet
    try:
        status = await job.status()
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    result = await job.result() if status is JobStatus.SUCCEEDED else None  # ended: returns at once
    return {"status": status.value, "result": result}
