"""Prometheus metrics, as docs/metrics.md shows them: ``python docs/examples/metrics.py [REDIS_URL]``.

A web service (FastAPI) whose handlers enqueue, with ``/metrics`` mounted from
``prometheus_client.make_asgi_app()``: its enqueue counters and the queue-wide gauges. A
worker that serves its own ``/metrics`` with ``aiotaskq.metrics.serve()``. ``main`` plays
both in one process (one Metrics for both: a queue is watched by one); in production they
are separate processes, each with its own. ``tests/test_metrics_example.py`` runs it.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from aiotaskq import Pool, Queue
from aiotaskq.metrics import Metrics, serve

queue = Queue("shop")


@queue.task(name="shop.send_receipt")
async def send_receipt(order_id: int) -> str:
    await anyio.sleep(0.001)  # the mail provider, in real life
    return f"receipt for order {order_id} sent"


def web_app(metrics: Metrics) -> FastAPI:
    """The web service: ``POST /orders/{id}`` enqueues, ``/metrics/`` is for Prometheus."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.instrument(queue)  # on the app's event loop: where the queue-wide gauges are read
        yield
        await queue.close()

    app = FastAPI(lifespan=lifespan)
    app.mount("/metrics", make_asgi_app(metrics.registry))

    @app.post("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, str]:
        job = await send_receipt.enqueue(order_id)
        return {"job_id": job.id}

    return app


async def main(url: str, orders: int = 3) -> dict[str, float]:
    """Enqueue ``orders`` jobs, run them in a pool that serves /metrics on a free loopback
    port, scrape that page, and return a few of its samples by name."""
    queue.use_url(url)
    metrics = Metrics(CollectorRegistry())  # a registry of its own: main may run more than once
    try:
        page = await _enqueue_and_work(metrics, orders)
    finally:
        metrics.close()  # the queue may be watched again, by the next run
    labels = {"queue": queue.name, "task": send_receipt.name}
    wanted = {
        "aiotaskq_jobs_enqueued_total": labels,
        "aiotaskq_jobs_succeeded_total": labels,
        "aiotaskq_job_wait_seconds_count": labels,
        "aiotaskq_queue_jobs": {"queue": queue.name, "status": "succeeded"},
        "aiotaskq_pools": {"queue": queue.name},
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if wanted.get(s.name) == s.labels:
                found[s.name] = s.value
    return found


async def _enqueue_and_work(metrics: Metrics, orders: int) -> str:
    """The producer's enqueues, then a worker that serves /metrics: the page it served."""
    async with queue:
        metrics.instrument(queue)
        jobs = [await send_receipt.enqueue(i) for i in range(orders)]
        pool = Pool(queue, concurrency=4)
        # The worker: `aiotaskq worker ... --metrics-port 9100` is `serve(9100, pool)`.
        with serve(0, pool, host="127.0.0.1", metrics=metrics) as server:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                for job in jobs:
                    await job.result(timeout=10)
                page = await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{server.port}/metrics")
                pool.stop()
    return page


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the loopback URL main built
        body: bytes = response.read()
    return body.decode()


if __name__ == "__main__":
    redis_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AIOTASKQ_REDIS_URL", "redis://localhost:6379/0")
    print(anyio.run(main, redis_url))
