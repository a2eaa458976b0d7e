"""A traced application for ``aiotaskq worker tests.apps.traceapp:queue``, as docs/tracing.md
tells a worker to do it: the SDK configured at import, the pool instrumented by an
``on_startup`` hook. Its spans go, one JSON line each, to the file ``$TRACEAPP_SPANS``
(a stand-in for an OTLP exporter: the test reads them back from another process)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from aiotaskq import Pool, Queue
from aiotaskq.tracing import Tracing

queue = Queue(os.environ.get("TRACEAPP_QUEUE", "traceapp"))
tracer = trace.get_tracer("traceapp")


class JsonLines(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for s in spans:
                out.write(json.dumps({
                    "name": s.name, "kind": s.kind.name, "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent": f"{s.parent.span_id:016x}" if s.parent else None,
                    "links": [f"{link.context.span_id:016x}" for link in s.links],
                    "attributes": dict(s.attributes or {}), "status": s.status.status_code.name,
                }) + "\n")  # fmt: skip
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLines(os.environ.get("TRACEAPP_SPANS", "spans.jsonl"))))
tracing = Tracing(provider)


@queue.on_startup
async def traced(pool: Pool) -> None:
    tracing.instrument(pool)


@queue.task(name="trace.charge", retries=1)
async def charge(amount: int) -> int:
    with provider.get_tracer("traceapp").start_as_current_span("charge the card") as span:
        if not span.get_span_context().is_valid:
            raise RuntimeError("no tracer")
        marker = queue.keys.prefix + "test:charged"
        if await queue.redis.incr(marker) == 1:
            raise ConnectionError("the card processor hung up")
    return amount
