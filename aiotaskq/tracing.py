"""OpenTelemetry traces (the ``otel`` extra: ``pip install 'aiotaskq[otel]'``), following the
messaging semantic conventions (docs/tracing.md).

``Tracing().instrument(queue)`` makes every enqueue a PRODUCER span ``send <queue>`` (a child
of the span current at the call, a web request's say), whose context travels with each job of
the call (W3C trace context, in the job's payload beside its arguments). ``instrument(pool)``
makes every attempt a CONSUMER span ``process <queue>`` linked to that producer span (links, as
the conventions prefer for messaging), current while the task runs, so that the task's own
spans are its children; a failed attempt records its exception and sets the error status.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"aiotaskq.tracing needs the otel extra: pip install 'aiotaskq[otel]' ({exc})") from exc

from .job import payload_meta
from .pool import Pool
from .queue import Queue

if TYPE_CHECKING:
    from ._executor import Claimed
    from .hooks import OutcomeStatus

SYSTEM: Final = "aiotaskq"


def _version() -> str:
    try:
        return metadata.version("aiotaskq")
    except metadata.PackageNotFoundError:
        return "0"


class Tracing:
    """Spans for the queues and pools given to :meth:`instrument`, from ``tracer_provider``
    (default: the global one, ``opentelemetry.trace.set_tracer_provider``)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("aiotaskq", _version(), tracer_provider=tracer_provider)

    def instrument(self, target: Pool | Queue) -> None:
        """Trace a queue's enqueues (``send``), or a pool's attempts (``process``) and its
        queues' enqueues (a task that enqueues)."""
        if isinstance(target, Queue):
            target.tracer = _Sender(self.tracer)
            return
        if not isinstance(target, Pool):
            raise TypeError(f"target: expected a Pool or a Queue, got {type(target).__name__}")
        for q in target.queues:
            q.tracer = _Sender(self.tracer)
        for r in target.runners:
            if not isinstance(r.executor.observer, _Processor):  # twice would make two spans per attempt
                r.executor.observer = _Processor(self.tracer, r.queue.name, r.executor.observer)


def _base(queue: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }


class _Sender:
    """``Queue.tracer`` (aiotaskq.queue.EnqueueTracer): a PRODUCER span per enqueue call."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def send_started(self, queue: Queue, task: str, n: int) -> tuple[Any, dict[str, str]]:
        attributes = _base(queue.name, "send")
        attributes["aiotaskq.task.name"] = task
        if n != 1:
            attributes["messaging.batch.message_count"] = n
        span = self.tracer.start_span(f"send {queue.name}", kind=SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier

    def send_ended(self, token: Any, job_ids: list[str], error: BaseException | None) -> None:
        span: trace.Span = token
        if len(job_ids) == 1:
            span.set_attribute("messaging.message.id", job_ids[0])
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()


class _Processor:
    """``Executor.observer`` (aiotaskq._executor.JobObserver): a CONSUMER span per attempt,
    current in the worker task while it runs; an observer that was there (metrics) is told too."""

    __slots__ = ("inner", "queue", "tracer")

    def __init__(self, tracer: trace.Tracer, queue: str, inner: Any) -> None:
        self.tracer, self.queue, self.inner = tracer, queue, inner

    def job_started(self, job: Claimed) -> Any:
        meta = payload_meta(job.payload)
        links = []
        if meta:
            parent = trace.get_current_span(propagate.extract(meta)).get_span_context()
            if parent.is_valid:
                links.append(Link(parent))
        attributes = _base(self.queue, "process")
        attributes.update({"messaging.message.id": job.id, "aiotaskq.task.name": job.task,
                           "aiotaskq.job.attempt": job.attempt})  # fmt: skip
        span = self.tracer.start_span(f"process {self.queue}", kind=SpanKind.CONSUMER, links=links,
                                      attributes=attributes)  # fmt: skip
        token = otel_context.attach(trace.set_span_in_context(span))
        inner = self.inner.job_started(job) if self.inner is not None else None
        return span, token, inner

    def job_ended(self, job: Claimed, status: OutcomeStatus, token: Any, error: BaseException | None) -> None:
        span, attached, inner = token
        if self.inner is not None:
            self.inner.job_ended(job, status, inner, error)
        span.set_attribute("aiotaskq.job.outcome", status)
        if status in ("failed", "retrying"):
            if error is not None:
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}" if error else status))
        otel_context.detach(attached)
        span.end()
