"""aiohttp: a cleanup context opens the queue when the app starts and closes it when the app
stops, and stores it on the app under a typed key (``QUEUE``), where handlers find it.

Serve it with ``python -m aiohttp.web docs.examples.frameworks.aiohttp_app:create_app``; run its
jobs with ``python -m aiotaskq worker docs.examples.frameworks.aiohttp_app:queue``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from aiotaskq import JobNotFound, Queue

queue = Queue("webhooks")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0

QUEUE = web.AppKey("queue", Queue)  # typed: request.app[QUEUE] is a Queue to mypy


@queue.task(retries=5)  # a receiver that is down is retried with backoff
async def deliver(url: str, event: dict[str, Any]) -> int:
    return 200  # POST the event to the subscriber's URL here; return its status code


async def open_queue(app: web.Application) -> AsyncIterator[None]:
    async with queue:  # closes the client and its pub/sub connection when the app stops
        await queue.redis.ping()  # connect now: a wrong URL fails the start-up, not the first request
        app[QUEUE] = queue
        yield


async def send_event(request: web.Request) -> web.Response:
    body = await request.json()
    job = await deliver.enqueue(str(body["url"]), dict(body["event"]))  # stored before the response goes out
    return web.json_response({"job_id": job.id}, status=202)


async def delivery_status(request: web.Request) -> web.Response:
    job = request.app[QUEUE].job(request.match_info["job_id"])
    try:
        info = await job.info()
    except JobNotFound:
        raise web.HTTPNotFound(text="no such job") from None
    return web.json_response({"status": info.status.value, "attempts": info.attempts, "result": info.result})


def create_app(argv: list[str] | None = None) -> web.Application:
    """The application (``python -m aiohttp.web`` passes its extra command-line arguments)."""
    app = web.Application()
    app.cleanup_ctx.append(open_queue)
    app.add_routes([web.post("/events", send_event), web.get("/jobs/{job_id}", delivery_status)])
    return app
