"""OpenTelemetry traces (aiotaskq.tracing) through a real pool and Redis, read back from the SDK's
in-memory exporter: a PRODUCER span per enqueue whose context travels with the job, a CONSUMER
span per attempt linked to it, the task's own spans inside it, errors recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from _util import must, run_pool, wait_status
from _workers import ROOT
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiotaskq import JobStatus, Queue
from aiotaskq.job import decode_payload, payload_meta
from aiotaskq.tracing import Tracing


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_an_enqueue_and_its_attempts_are_linked_spans(queue: Queue, exporter: InMemorySpanExporter) -> None:
    tp = provider(exporter)
    tracing = Tracing(tp)
    tracing.instrument(queue)
    tracer = tp.get_tracer("test")
    attempts: list[int] = []

    @queue.task(retries=1)
    async def charge(amount: int) -> int:
        attempts.append(amount)
        with tracer.start_as_current_span("charge the card"):
            if len(attempts) == 1:
                raise ConnectionError("the card processor hung up")
        return amount

    with tracer.start_as_current_span("POST /orders") as request:
        job = must(await charge.enqueue(42))
    assert payload_meta(await _payload(queue, job.id))["traceparent"].startswith("00-")
    assert decode_payload(await _payload(queue, job.id)) == ([42], {})  # the arguments, as before
    async with run_pool(queue, concurrency=2) as running:
        tracing.instrument(running)
        assert await job.result(timeout=10) == 42
    spans = exporter.get_finished_spans()
    [send] = named(spans, f"send {queue.name}")
    assert send.kind is SpanKind.PRODUCER and send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id  # a child of the web request
    assert send.attributes is not None and send.attributes["messaging.message.id"] == job.id
    assert send.attributes["messaging.system"] == "aiotaskq"
    assert send.attributes["messaging.destination.name"] == queue.name
    assert send.attributes["messaging.operation.type"] == "send"
    processes = sorted(named(spans, f"process {queue.name}"), key=lambda s: s.start_time or 0)
    assert len(processes) == 2  # the failed attempt and its retry
    for attempt, span in enumerate(processes, 1):
        assert span.kind is SpanKind.CONSUMER
        assert [link.context.span_id for link in span.links] == [send.context.span_id]  # linked, not a child
        assert span.attributes is not None and span.attributes["messaging.message.id"] == job.id
        assert span.attributes["aiotaskq.job.attempt"] == attempt
        assert span.attributes["messaging.operation.type"] == "process"
    first, second = processes
    assert first.status.status_code is StatusCode.ERROR and "ConnectionError" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception"]
    assert first.attributes is not None and first.attributes["aiotaskq.job.outcome"] == "retrying"
    assert second.status.status_code is StatusCode.UNSET
    inner = named(spans, "charge the card")
    assert len(inner) == 2
    assert {s.parent.span_id for s in inner if s.parent} == {first.context.span_id, second.context.span_id}


async def _payload(queue: Queue, job_id: str) -> bytes:
    from aiotaskq.testing import job_fields

    [fields] = await job_fields(queue, [job_id])
    assert fields is not None
    return fields["payload"]


async def test_enqueue_many_is_one_send_span_for_the_batch(queue: Queue, exporter: InMemorySpanExporter) -> None:
    Tracing(provider(exporter)).instrument(queue)

    @queue.task
    async def thumb(n: int) -> int:
        return n

    jobs = await thumb.enqueue_many([(n,) for n in range(5)])
    [send] = named(exporter.get_finished_spans(), f"send {queue.name}")
    assert send.attributes is not None and send.attributes["messaging.batch.message_count"] == 5
    metas = [payload_meta(await _payload(queue, must(j).id)) for j in jobs]
    assert (
        len({m["traceparent"] for m in metas}) == 1
        and send.context.trace_id.to_bytes(16).hex() in metas[0]["traceparent"]
    )


async def test_a_job_enqueued_without_tracing_still_runs_in_a_traced_pool(
    queue: Queue, exporter: InMemorySpanExporter
) -> None:
    @queue.task
    async def plain() -> str:
        return "ok"

    job = must(await plain.enqueue())  # no tracer on the queue yet: no context in the job
    tracing = Tracing(provider(exporter))
    async with run_pool(queue) as pool:
        tracing.instrument(pool)
        late = must(await plain.enqueue())  # instrumenting the pool traces its queues' enqueues too
        assert [await job.result(timeout=5), await late.result(timeout=5)] == ["ok", "ok"]
    process = named(exporter.get_finished_spans(), f"process {queue.name}")
    by_id = {s.attributes["messaging.message.id"]: s for s in process if s.attributes}
    assert by_id[job.id].links == () and len(by_id[late.id].links) == 1
    await wait_status(queue, job.id, JobStatus.SUCCEEDED)


async def test_a_worker_process_traces_the_jobs_a_web_service_enqueued(
    queue: Queue, redis_url: str, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Across processes, as in production: this process enqueues inside a request span (its
    own in-memory exporter); an ``aiotaskq worker`` subprocess on tests/apps/traceapp.py, its
    pool instrumented by an on_startup hook, exports its spans to a file. Each attempt's
    ``process`` span links to the ``send`` span the job carried over Redis."""
    tp = provider(exporter)
    Tracing(tp).instrument(queue)
    charge = queue.task(name="trace.charge")(lambda amount: amount)  # the worker's task, by name
    spans_file = tmp_path / "spans.jsonl"
    worker = _traced_worker(queue.name, redis_url, spans_file, tmp_path / "worker.log")
    try:
        with tp.get_tracer("test").start_as_current_span("POST /orders"):
            job = must(await charge.enqueue(42))
        assert await job.result(timeout=20) == 42
        worker.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: worker.wait(20)) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    [send] = named(exporter.get_finished_spans(), f"send {queue.name}")
    exported = [json.loads(line) for line in spans_file.read_text().splitlines()]
    processes = [s for s in exported if s["name"] == f"process {queue.name}"]
    assert [s["attributes"]["aiotaskq.job.attempt"] for s in processes] == [1, 2]
    for span in processes:
        assert span["kind"] == "CONSUMER" and span["links"] == [f"{send.context.span_id:016x}"]
        assert span["attributes"]["messaging.message.id"] == job.id
    assert [s["status"] for s in processes] == ["ERROR", "UNSET"]
    inner = [s for s in exported if s["name"] == "charge the card"]
    assert sorted(s["parent"] for s in inner) == sorted(s["span_id"] for s in processes)


def _traced_worker(name: str, redis_url: str, spans: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRACEAPP_QUEUE": name, "TRACEAPP_SPANS": str(spans), "AIOTASKQ_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aiotaskq", "worker", "tests.apps.traceapp:queue", "--poll-interval", "0.2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_without_the_otel_extra_the_import_names_it() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import aiotaskq.tracing\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "pip install 'aiotaskq[otel]'" in out.stderr


async def test_the_docs_example(redis_url: str, exporter: InMemorySpanExporter) -> None:
    from docs.examples import tracing

    tp = provider(exporter)
    assert await tracing.main(tp, redis_url) == "order 42 shipped"
    names = {s.name for s in exporter.get_finished_spans()}
    assert {"POST /orders", "send orders", "process orders"} <= names


async def test_a_sync_enqueue_opens_the_same_producer_span(queue: Queue, exporter: InMemorySpanExporter) -> None:
    import anyio

    tp = provider(exporter)
    Tracing(tp).instrument(queue)

    @queue.task
    async def ping() -> None:
        return None

    job = await anyio.to_thread.run_sync(lambda: ping.enqueue_sync())
    [span] = named(exporter.get_finished_spans(), f"send {queue.name}")
    assert span.kind is SpanKind.PRODUCER and span.attributes is not None
    assert span.attributes["messaging.message.id"] == job.id
    assert payload_meta(await _payload(queue, job.id))["traceparent"].startswith("00-")
