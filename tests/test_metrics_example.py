"""docs/examples/metrics.py runs: the worker's /metrics page over HTTP, and the web service's
FastAPI app with prometheus_client's ASGI app mounted (driven in-process, as ASGI)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aiotaskq import JobStatus
from aiotaskq.metrics import Metrics
from docs.examples import metrics as example


async def test_main_serves_the_workers_metrics(redis_url: str) -> None:
    found = await example.main(redis_url, orders=3)
    assert found == {
        "aiotaskq_jobs_enqueued_total": 3,
        "aiotaskq_jobs_succeeded_total": 3,
        "aiotaskq_job_wait_seconds_count": 3,
        "aiotaskq_queue_jobs": found["aiotaskq_queue_jobs"],  # the queue's whole history (kept results)
        "aiotaskq_pools": 1,
    }
    assert found["aiotaskq_queue_jobs"] >= 3
    again = await example.main(redis_url, orders=1)  # close() let the next run watch the queue
    assert again["aiotaskq_jobs_enqueued_total"] == 1


async def asgi(app: Any, method: str, path: str) -> tuple[int, bytes]:
    """One HTTP request to an ASGI app, in-process."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def samples(page: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }


async def test_the_web_service_shows_its_enqueues(redis_url: str) -> None:
    example.queue.use_url(redis_url)
    metrics = Metrics(CollectorRegistry())
    app = example.web_app(metrics)
    name = example.queue.name
    try:
        async with app.router.lifespan_context(app):
            assert (await asgi(app, "POST", "/orders/7"))[0] == 200
            assert (await asgi(app, "POST", "/orders/8"))[0] == 200
            status, page = await asgi(app, "GET", "/metrics/")
            assert status == 200
            got = samples(page)
            task = (("queue", name), ("task", example.send_receipt.name))
            assert got[("aiotaskq_jobs_enqueued_total", task)] == 2
            assert got[("aiotaskq_jobs_started_total", task)] == 0  # no pool in this process
            # Served from the queue's own loop, the scrape could not wait for Redis: no gauge yet.
            assert ("aiotaskq_queue_jobs", (("queue", name), ("status", "queued"))) not in got
            await metrics.refresh()  # what docs/metrics.md suggests for a page served from the loop
            counts = await example.queue.counts()
            got = samples((await asgi(app, "GET", "/metrics/"))[1])
            for wanted in ("queued", "succeeded"):
                sample = ("aiotaskq_queue_jobs", (("queue", name), ("status", wanted)))
                assert got[sample] == counts[JobStatus(wanted)]
            assert counts[JobStatus.QUEUED] == 2
            assert await example.queue.purge(JobStatus.QUEUED) == 2  # nothing left for another test's pool
    finally:
        metrics.close()
