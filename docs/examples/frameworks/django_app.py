"""Django: a whole project in one module (``settings.configure``, its URLs, two views) that
enqueues from a sync view with the blocking API (``task.enqueue_sync``) and from an async view
with ``await task.enqueue``. ``application`` serves it under ASGI and closes the queue when the
server shuts down (Django itself answers HTTP only, not the ASGI lifespan messages).

Serve it with ``uvicorn docs.examples.frameworks.django_app:application``; run its jobs with
``python -m aiotaskq worker docs.examples.frameworks.django_app:queue``. Under WSGI
(``django.core.wsgi.get_wsgi_application()``) only the sync view's way works: Django runs an
async view there on an event loop of its own per request, which the queue's asyncio client,
made on the first one, cannot follow.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

# Django ships no type hints (django-stubs would bring them): mypy takes its names as Any.
import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from aiotaskq import Queue

queue = Queue("invoices")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0


@queue.task(retries=3)
async def send_invoice(order_id: int, email: str) -> str:
    return f"invoice for order {order_id} sent to {email}"  # render and mail it here


def checkout(request: HttpRequest) -> HttpResponse:
    """A sync view (a WSGI worker, or a thread of Django's under ASGI): no event loop here, so it
    enqueues with the blocking call, on a redis-py client of the queue's own (thread-safe)."""
    if request.method != "POST":
        return HttpResponse(status=405)
    order = json.loads(request.body)
    job = send_invoice.enqueue_sync(int(order["order_id"]), str(order["email"]))
    return JsonResponse({"job_id": job.id}, status=202)


async def checkout_async(request: HttpRequest) -> HttpResponse:
    """An async view: it runs on the server's event loop, so it awaits the asyncio call."""
    if request.method != "POST":
        return HttpResponse(status=405)
    order = json.loads(request.body)
    job = await send_invoice.enqueue(int(order["order_id"]), str(order["email"]))
    return JsonResponse({"job_id": job.id}, status=202)


urlpatterns = [path("checkout", checkout), path("checkout-async", checkout_async)]

if not settings.configured:  # the module is the project: settings, URLs (ROOT_URLCONF) and views
    settings.configure(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["localhost", "127.0.0.1", "testserver"],  # testserver: Django's test clients
        MIDDLEWARE=[],  # kept empty for brevity: a real project keeps its own; nothing here needs any
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()

# -- ASGI, with the queue closed at shutdown -----------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_queue(django_app: ASGIApp) -> ASGIApp:
    """``django_app``, with the ASGI lifespan answered here: the queue connects at start-up and
    closes at shutdown, as the other frameworks' lifespans do."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await django_app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await queue.redis.ping()  # a wrong URL fails the start-up, not the first request
                except RedisError as exc:
                    await queue.close()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise  # as Starlette's lifespan does: the server (or test client) reports it
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await queue.close()  # the asyncio client, its pub/sub connection, the sync view's blocking ones
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


application = with_queue(ASGIHandler())
