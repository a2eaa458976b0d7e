"""The web framework integrations of docs/frameworks.md (docs/examples/frameworks/), each run by the
framework's own test client against the suite's Redis: an endpoint enqueues, a pool runs the job,
an endpoint (or the job) gives its result, and the app's lifespan closed every connection it opened.

Starlette's, FastAPI's and Litestar's test clients run the app on an event loop of their own, in
a thread: the tests reach that loop through the client's portal to run the pool there, where the
queue's asyncio client lives. aiohttp's and Django's async clients run the app on the test's loop.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from _util import shard_subscribers, wait_for
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from anyio.from_thread import BlockingPortal
from django.test import AsyncClient, Client  # type: ignore[import-untyped]
from fastapi.testclient import TestClient as FastAPIClient
from litestar.testing import TestClient as LitestarClient
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.testclient import TestClient as StarletteClient

from aiotaskq import JobStatus, Queue
from aiotaskq.testing import drain, free_port
from docs.examples.frameworks import aiohttp_app, django_app, fastapi_app, litestar_app, starlette_app

ROOT = Path(__file__).resolve().parents[1]

# -- what every test checks: the connections the app opened are closed once it stopped ------------


async def connections(queue: Queue, url: str) -> set[int]:
    """The ids of the clients connected to the Redis node that holds ``queue`` (CLIENT LIST),
    but the one asking. A queue of the same name asks: on a cluster, it reaches the same node."""
    async with Queue(queue.name, url=url) as probe:
        own = await probe.redis.client_id()
        listed = await probe.redis.client_list()
    return {int(c["id"]) for c in listed} - {own}


async def wait_closed(queue: Queue, url: str, opened: set[int]) -> None:
    """Wait until none of the connections ``opened`` is left on the server."""

    async def gone() -> bool:
        return not opened & await connections(queue, url)

    await wait_for(gone, 5, f"the connections {sorted(opened)} to close")


class Connections:
    """Which connections to Redis appeared while an app ran (``during``), to check after it
    stopped that they are all gone (``closed``). Sync: for tests whose client has a portal."""

    def __init__(self, queue: Queue, url: str) -> None:
        self.queue, self.url = queue, url
        self.before = anyio.run(connections, queue, url)
        self.opened: set[int] = set()

    def during(self, portal: BlockingPortal) -> None:
        self.opened = portal.call(connections, self.queue, self.url) - self.before
        assert self.opened, "the app did not connect to Redis"

    def closed(self) -> None:
        anyio.run(wait_closed, self.queue, self.url, self.opened)


@pytest.fixture
def on_test_redis(redis_url: str) -> None:
    """Every example's queue on the suite's Redis (each test's lifespan closes the one it used,
    so that the next test may point it again)."""
    for module in (fastapi_app, starlette_app, litestar_app, aiohttp_app, django_app):
        module.queue.use_url(redis_url)


def must_portal(portal: BlockingPortal | None) -> BlockingPortal:
    assert portal is not None, "the test client runs the app inside a `with` block only"
    return portal


# -- FastAPI ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("on_test_redis")
def test_fastapi_a_post_enqueues_and_the_lifespan_closes_the_queue(redis_url: str) -> None:
    q = fastapi_app.queue
    conns = Connections(q, redis_url)
    with FastAPIClient(fastapi_app.app) as client:
        portal = must_portal(client.portal)
        made = client.post("/signups", json={"user_id": 7, "email": "ada@example.com"})
        assert made.status_code == 202
        job_id = made.json()["job_id"]
        assert client.get(f"/jobs/{job_id}").json() == {"status": "queued", "result": None}
        portal.call(drain, q)  # a worker, on the app's loop: the queue's client belongs to it
        done = client.get(f"/jobs/{job_id}").json()
        assert done == {"status": "succeeded", "result": "welcome mail sent to ada@example.com"}
        assert client.get("/jobs/no-such-job").status_code == 404
        conns.during(portal)
    conns.closed()


@pytest.mark.usefixtures("on_test_redis")
def test_fastapi_handlers_get_the_lifespans_queue_by_dependency_injection(redis_url: str) -> None:
    q, app = fastapi_app.queue, fastapi_app.app
    elsewhere = Queue("signups-elsewhere", url=redis_url)
    with FastAPIClient(app) as client:
        portal = must_portal(client.portal)
        job_id = client.post("/signups", json={"user_id": 8, "email": "bob@example.com"}).json()["job_id"]
        # The injected queue is the one send_welcome enqueued on: it finds the job...
        assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"
        # ...and the handler looks where the dependency says: another queue has no such job.
        app.dependency_overrides[fastapi_app.get_queue] = lambda: elsewhere
        try:
            assert client.get(f"/jobs/{job_id}").status_code == 404
        finally:
            app.dependency_overrides.clear()
            portal.call(elsewhere.close)
        portal.call(drain, q)
        assert client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"


# -- Starlette -------------------------------------------------------------------------------------


async def run_once_awaited(queue: Queue, job_id: str) -> None:
    """Run the job once a request waits for its result (subscribed to its end channel): the
    answer can then only come from the end message."""
    channel = queue.keys.done(job_id)

    async def subscribed() -> bool:
        return await shard_subscribers(queue.redis, channel) > 0

    await wait_for(subscribed, 5, "the handler to wait for the job")
    await drain(queue)


@pytest.mark.usefixtures("on_test_redis")
def test_starlette_a_request_waits_for_the_result_and_the_lifespan_closes_the_queue(redis_url: str) -> None:
    q = starlette_app.queue
    conns = Connections(q, redis_url)
    with StarletteClient(starlette_app.app) as client:
        portal = must_portal(client.portal)
        made = client.post("/thumbnails", json={"path": "cat.jpg", "width": 320})
        assert made.status_code == 202
        job_id = made.json()["job_id"]
        pending = client.get(f"/jobs/{job_id}")  # no wait: where the job is, at once
        assert (pending.status_code, pending.json()["status"]) == (202, "queued")
        worker = portal.start_task_soon(run_once_awaited, q, job_id)
        done = client.get(f"/jobs/{job_id}", params={"wait": 5})
        worker.result(timeout=10)
        assert done.status_code == 200
        assert done.json() == {"status": "succeeded", "result": "cat-320px.webp", "error": None}
        conns.during(portal)  # the pub/sub connection of the wait among them
    conns.closed()


# -- Litestar --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("on_test_redis")
def test_litestar_a_post_enqueues_through_the_provided_queue_and_the_lifespan_closes_it(redis_url: str) -> None:
    q = litestar_app.queue
    conns = Connections(q, redis_url)
    with LitestarClient(litestar_app.app) as client:
        portal = client.blocking_portal
        assert client.app.state.queue is q  # what provide_queue hands to the handlers
        made = client.post("/reports", json={"account": 3, "period": "2024-Q4"})
        assert made.status_code == 202
        job_id = made.json()["job_id"]
        assert client.get(f"/jobs/{job_id}").json() == {"status": "queued", "attempts": 0, "result": None}
        portal.call(drain, q)
        done = client.get(f"/jobs/{job_id}").json()
        assert done == {"status": "succeeded", "attempts": 1, "result": {"account": 3, "period": "2024-Q4", "rows": 42}}
        assert client.get("/jobs/no-such-job").status_code == 404
        conns.during(portal)
    conns.closed()


# -- aiohttp ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("on_test_redis")
async def test_aiohttp_a_post_enqueues_and_the_cleanup_context_closes_the_queue(redis_url: str) -> None:
    q = aiohttp_app.queue
    before = await connections(q, redis_url)
    app = aiohttp_app.create_app()
    async with AiohttpClient(TestServer(app)) as client:
        assert app[aiohttp_app.QUEUE] is q
        made = await client.post("/events", json={"url": "https://example.com/hook", "event": {"type": "paid"}})
        assert made.status == 202
        job_id = (await made.json())["job_id"]
        await drain(q)  # the app runs on this loop: the pool can too
        got = await client.get(f"/jobs/{job_id}")
        assert await got.json() == {"status": "succeeded", "attempts": 1, "result": 200}
        assert (await client.get("/jobs/no-such-job")).status == 404
        opened = await connections(q, redis_url) - before
        assert opened
    await wait_closed(q, redis_url, opened)


# -- Django ----------------------------------------------------------------------------------------

ORDER = {"order_id": 12, "email": "ada@example.com"}
SENT = "invoice for order 12 sent to ada@example.com"


async def run_jobs(queue: Queue) -> None:
    """A worker's turn, on a loop of its own; the queue's asyncio client goes with the loop."""
    async with queue:
        await drain(queue)


@pytest.mark.usefixtures("on_test_redis")
def test_django_sync_view_enqueues_with_the_blocking_api() -> None:
    q = django_app.queue
    try:
        made = Client().post("/checkout", ORDER, content_type="application/json")
        assert made.status_code == 202
        job = q.job(made.json()["job_id"])
        assert job.status_sync() is JobStatus.QUEUED  # stored before the view answered
        anyio.run(run_jobs, q)
        assert job.result_sync(timeout=5) == SENT
        assert Client().get("/checkout").status_code == 405
    finally:
        q.close_sync()


@pytest.mark.usefixtures("on_test_redis")
async def test_django_async_view_enqueues_with_await() -> None:
    q = django_app.queue
    async with q:
        made = await AsyncClient().post("/checkout-async", ORDER, content_type="application/json")
        assert made.status_code == 202
        job = q.job(made.json()["job_id"])
        assert await job.status() is JobStatus.QUEUED
        await drain(q)
        assert await job.result(timeout=5) == SENT
        assert (await AsyncClient().get("/checkout-async")).status_code == 405


@pytest.mark.usefixtures("on_test_redis")
def test_django_under_asgi_serves_both_views_and_closes_the_queue_at_shutdown(redis_url: str) -> None:
    # Django has no test client that sends the ASGI lifespan messages; Starlette's drives any ASGI app.
    q = django_app.queue
    conns = Connections(q, redis_url)
    with StarletteClient(django_app.application) as client:
        portal = must_portal(client.portal)
        ids = [client.post(url, json=ORDER).json()["job_id"] for url in ("/checkout", "/checkout-async")]
        portal.call(drain, q)
        assert [q.job(i).result_sync(timeout=5) for i in ids] == [SENT, SENT]
        conns.during(portal)  # the asyncio client's, and the sync view's blocking ones
    conns.closed()


# -- every lifespan connects at start-up ------------------------------------------------------------

# A queue, and the framework's test client of the app that opens it.
STARTS: dict[str, tuple[Queue, Callable[[], contextlib.AbstractContextManager[object]]]] = {
    "fastapi": (fastapi_app.queue, lambda: FastAPIClient(fastapi_app.app)),
    "starlette": (starlette_app.queue, lambda: StarletteClient(starlette_app.app)),
    "litestar": (litestar_app.queue, lambda: LitestarClient(litestar_app.app)),
    "django-asgi": (django_app.queue, lambda: StarletteClient(django_app.application)),
}


@contextlib.contextmanager
def unreachable(queue: Queue, redis_url: str) -> Iterator[None]:
    """The queue pointed at a port nothing listens on, for the block."""
    queue.use_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        yield
    finally:
        queue.use_url(redis_url)  # the failed start-up closed the queue: it may move again


def raised(exc: BaseException) -> list[BaseException]:
    """``exc``, or the exceptions in it when it is a group (Litestar's test client raises so)."""
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in raised(sub)]
    return [exc]


@pytest.mark.parametrize("framework", list(STARTS))
def test_an_unreachable_redis_fails_the_start_up(framework: str, redis_url: str) -> None:
    queue, client = STARTS[framework]
    with unreachable(queue, redis_url), pytest.raises((RedisConnectionError, ExceptionGroup)) as failed, client():
        pytest.fail("the app started")
    assert [type(e) for e in raised(failed.value)] == [RedisConnectionError]


async def test_aiohttp_an_unreachable_redis_fails_the_start_up(redis_url: str) -> None:
    client = AiohttpClient(TestServer(aiohttp_app.create_app()))
    try:
        with unreachable(aiohttp_app.queue, redis_url), pytest.raises(RedisConnectionError):
            await client.start_server()
    finally:
        await client.close()  # its HTTP session (no `async with`: the start-up never finished)


# -- the docs page ---------------------------------------------------------------------------------


def test_the_docs_page_shows_the_code_the_tests_run() -> None:
    """Every ```python block of docs/frameworks.md is copied from an example (or from this file),
    at some indentation: the page cannot drift from the code tested here."""
    page = (ROOT / "docs" / "frameworks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    sources = [p.read_text() for p in [*(ROOT / "docs" / "examples" / "frameworks").glob("*.py"), Path(__file__)]]
    assert len(blocks) >= 10
    for block in blocks:
        assert any(textwrap.indent(block, " " * n) in src for src in sources for n in (0, 4, 8)), block
