"""Traces of a queue's jobs, as docs/tracing.md shows them: a web request enqueues a job (a
``send`` span, a child of the request's), a pool runs it (a ``process`` span linked to the
``send``), the task's own spans nest inside. tests/test_tracing.py runs ``main`` with the SDK's
in-memory exporter; an application would configure its own exporter (OTLP, say).
"""

from __future__ import annotations

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from aiotaskq import Pool, Queue
from aiotaskq.tracing import Tracing

queue = Queue("orders")
tracer = trace.get_tracer("shop")


@queue.task
async def ship(order_id: int) -> str:
    with tracer.start_as_current_span("book the courier"):  # a child of "process orders"
        return f"order {order_id} shipped"


async def main(provider: TracerProvider, url: str) -> str:
    queue.use_url(url)
    tracing = Tracing(provider)
    tracing.instrument(queue)  # the producer side: a web service does this at start-up
    pool = Pool(queue, concurrency=4)
    tracing.instrument(pool)  # the worker side
    async with queue, anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with provider.get_tracer("shop").start_as_current_span("POST /orders"):
            job = await ship.enqueue(42)
        result = await job.result(timeout=10)
        pool.stop()
    return result
