"""Prometheus metrics for pools and queues (an optional extra: ``pip install 'aiotaskq[metrics]'``).

``Metrics`` keeps plain Python counts per (queue, task), written on the job path, and is a
``prometheus_client`` collector that turns them into metric families when scraped: a
``Counter.inc()`` or ``Histogram.observe()`` per job would take a lock and cost a no-op job
several microseconds of its 23. ``instrument(pool)`` or ``instrument(queue)`` switches it on;
``serve(port, pool)`` also starts an HTTP server for ``/metrics``. See docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, cast
from wsgiref.simple_server import WSGIServer

try:
    from prometheus_client import REGISTRY, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - the message is what is tested (tests/test_metrics.py)
    raise ImportError(
        "aiotaskq.metrics needs prometheus_client, which is not installed: pip install 'aiotaskq[metrics]'"
    ) from exc

from ._executor import Claimed, Executor
from .hooks import OutcomeStatus
from .job import JobStatus
from .pool import Pool
from .queue import Queue

__all__ = ["BUCKETS", "Metrics", "MetricsServer", "serve"]

log = logging.getLogger("aiotaskq")
# Module globals rather than attribute lookups, on the job path.
_wall, _clock, _bisect = time.time, time.perf_counter, bisect_left
_go_float = cast(Callable[[float], str], floatToGoString)  # a bucket's "le", as prometheus_client writes it

#: Upper bounds (seconds) of the histograms' buckets, from a no-op job's run time to an hour's wait.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                  300.0, 900.0, 3600.0)  # fmt: skip

_LABELS: Final = ["queue", "task"]
# (name, help) of the counters, in the order of _Stats.values().
_COUNTERS: Final = (
    ("aiotaskq_jobs_enqueued_total", "Jobs written by this process's enqueues (deduplicated ones not)"),
    ("aiotaskq_jobs_started_total", "Attempts this process's pools started"),
    ("aiotaskq_jobs_succeeded_total", "Attempts that succeeded"),
    ("aiotaskq_jobs_failed_total", "Attempts that failed with no retry left: the job is failed"),
    ("aiotaskq_jobs_retried_total", "Attempts that failed and will run again"),
    ("aiotaskq_jobs_cancelled_total", "Running jobs that were cancelled"),
)
_ENDED: Final[dict[str, int]] = {"succeeded": 0, "failed": 1, "retrying": 2, "cancelled": 3}  # not "interrupted"
_DURATION: Final = ("aiotaskq_job_duration_seconds", "Run time of attempts that ended (with their job hooks)")
_WAIT: Final = (
    "aiotaskq_job_wait_seconds",
    "From a job's due time (its enqueue time when it had no delay) to the start of an attempt",
)


class _Stats:
    """The counts of one (queue, task): written on the event loop that runs or enqueues its
    jobs, read by the scrape's thread. Histograms are per-bucket counts (not cumulative) and a sum."""

    __slots__ = ("duration", "duration_sum", "ended", "enqueued", "started", "wait", "wait_sum")

    def __init__(self, buckets: int) -> None:
        self.enqueued = 0
        self.started = 0
        self.ended = [0, 0, 0, 0]  # succeeded, failed, retried, cancelled (_ENDED)
        self.duration = [0] * (buckets + 1)  # the last one: over the highest bound (+Inf)
        self.duration_sum = 0.0
        self.wait = [0] * (buckets + 1)
        self.wait_sum = 0.0

    def values(self) -> tuple[int, ...]:
        """The counters, in the order of _COUNTERS."""
        return (self.enqueued, self.started, *self.ended)


class _TaskTable:
    """The _Stats of one queue's tasks. Written on the event loop; a new task's entry is added
    under the Metrics' lock, which the scrape takes to copy the table."""

    def __init__(self, metrics: Metrics, queue: str) -> None:
        self.metrics = metrics
        self.queue = queue
        self.tasks: dict[str, _Stats] = {}

    def add(self, task: str) -> _Stats:
        with self.metrics._lock:
            return self.tasks.setdefault(task, _Stats(len(self.metrics.buckets)))


class _JobObserver:
    """The executor observer (``aiotaskq._executor.JobObserver``) of one queue of a pool:
    a few dict and list operations per attempt, no lock."""

    __slots__ = ("_bounds", "_table", "_tasks", "metrics")

    def __init__(self, table: _TaskTable) -> None:
        self.metrics = table.metrics
        self._table = table
        self._tasks = table.tasks
        self._bounds = table.metrics.buckets

    def job_started(self, job: Claimed) -> float:
        s = self._tasks.get(job.task) or self._table.add(job.task)
        s.started += 1
        due = job.due_ms or job.enqueued_ms
        if due:
            try:
                wait = _wall() - int(due) / 1000
            except ValueError:  # a record written by hand
                return _clock()
            if wait < 0:  # Redis's clock (due, enqueue times) is a little ahead of this machine's
                wait = 0.0
            s.wait[_bisect(self._bounds, wait)] += 1
            s.wait_sum += wait
        return _clock()

    def job_ended(self, job: Claimed, status: OutcomeStatus, token: float, error: BaseException | None) -> None:
        took = _clock() - token
        i = _ENDED.get(status)
        if i is None:  # interrupted (shutdown, lost): the attempt runs again, it counts in no end
            return
        s = self._tasks[job.task]
        s.duration[_bisect(self._bounds, took)] += 1
        s.duration_sum += took
        s.ended[i] += 1


class _QueueGauges:
    """The queue-wide gauges of one queue: Redis's numbers as last read, and how to read them.

    Why a read on demand, in the loop that owns the queue: prometheus collectors are
    synchronous and run in the scrape's thread, and the queue's Redis client belongs to one
    event loop. So the scrape sends ``_read()`` to that loop (``run_coroutine_threadsafe``) and
    waits for it up to ``Metrics.timeout``, then serves the last values: fresh numbers at each
    scrape while Redis answers, no Redis load while nobody scrapes, no background task to start
    or stop, and a scrape bounded in time when Redis (or the loop) is stuck. A loop that is not
    running is not sent anything. The loop is the running pool's (``Pool.loop``), else the one
    the queue was instrumented or last enqueued on."""

    def __init__(self, queue: Queue, timeout: float) -> None:
        self.queue = queue
        self.timeout = timeout
        self.pool: Pool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.snapshot: tuple[dict[JobStatus, int], int] | None = None  # counts, live pools; None: never read
        self._pending: concurrent.futures.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None  # a read started on the loop itself

    def _owner(self) -> asyncio.AbstractEventLoop | None:
        loop = self.pool.loop if self.pool is not None else None
        return loop or self.loop

    def request(self) -> concurrent.futures.Future[None] | None:
        """Ask the queue's loop for a read (from any thread); None when it cannot be waited for."""
        loop = self._owner()
        if loop is None or loop.is_closed() or not loop.is_running():
            return None
        if _running_loop() is loop:  # scraped on the loop itself (make_asgi_app): it must not block
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._read())  # its values show at the next scrape
            return None
        pending = self._pending
        if pending is None or pending.done():
            try:
                pending = self._pending = asyncio.run_coroutine_threadsafe(self._read(), loop)
            except RuntimeError:  # the loop closed meanwhile
                return None
        return pending

    async def _read(self) -> None:
        q = self.queue
        try:
            async with asyncio.timeout(self.timeout):
                counts = await q.counts()
                first = q.parts[0]  # a sharded queue's pools register on each shard: the first tells them
                pools = int(await first.redis.zcard(first.keys.pools))
        except Exception as exc:  # noqa: BLE001 - Redis away, slow or anything else: the last values stand
            log.debug("metrics: could not read the gauges of queue %r: %r", q.name, exc)
            return
        self.snapshot = (counts, pools)


class _EnqueueObserver:
    """The queue observer (``aiotaskq.queue.EnqueueObserver``): counts written jobs, and
    remembers the event loop the queue is used on (where its gauges are read)."""

    __slots__ = ("_gauges", "_table", "metrics")

    def __init__(self, table: _TaskTable, gauges: _QueueGauges) -> None:
        self.metrics = table.metrics
        self._table = table
        self._gauges = gauges

    def jobs_enqueued(self, queue: Queue, task: str, n: int) -> None:
        self._gauges.loop = asyncio.get_running_loop()
        s = self._table.tasks.get(task) or self._table.add(task)
        s.enqueued += n


class Metrics(Collector):
    """The metrics of this process's instrumented pools and queues, as a prometheus collector
    registered on ``registry`` (default: ``prometheus_client.REGISTRY``; one Metrics per
    registry). ``buckets`` are the histograms' upper bounds in seconds; ``timeout`` is how long
    a scrape waits for Redis's numbers (the queue-wide gauges) before serving the last ones.

    Counters and histograms are labelled ``queue`` and ``task`` (task names, never job ids:
    one series per task). Call ``instrument()`` for each pool or queue to watch.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, buckets: Iterable[float] = BUCKETS, timeout: float = 1.0
    ) -> None:
        bounds = tuple(sorted({float(b) for b in buckets}))
        if not bounds or not all(0 < b < math.inf for b in bounds):
            raise ValueError(f"buckets: give positive, finite upper bounds, got {buckets!r}")
        if not timeout > 0:
            raise ValueError(f"timeout: must be > 0, got {timeout!r}")
        self.buckets = bounds
        self.timeout = float(timeout)
        self.registry = REGISTRY if registry is None else registry
        self._lock = threading.Lock()
        self._tables: dict[str, _TaskTable] = {}
        self._gauges: dict[str, _QueueGauges] = {}
        self._pools: list[Pool] = []
        self._watched: list[Executor | Queue] = []  # what close() detaches from
        self.registry.register(self)

    # -- switching it on -----------------------------------------------------------------------

    def instrument(self, target: Pool | Queue) -> None:
        """Watch a pool or a queue (again: no change).

        A ``Pool``: its attempts (started, succeeded, failed, retried, cancelled, their run time
        and wait), its running jobs and concurrency, and each of its queues as below. A
        ``Queue``: the jobs this process enqueues on it, and its queue-wide gauges (jobs in each
        status, live pools), read from Redis at scrape time. Raises ValueError when another
        Metrics watches it already.
        """
        if isinstance(target, Pool):
            self._instrument_pool(target)
        elif isinstance(target, Queue):
            self._instrument_queue(target)
        else:
            raise TypeError(f"target: expected a Pool or a Queue, got {type(target).__name__}")

    def _instrument_pool(self, pool: Pool) -> None:
        for r in pool.runners:
            _check_free(r.executor, f"pool's queue {r.queue.name!r}", self)
        for q in pool.queues:
            self._instrument_queue(q)
            gauges = self._gauges[q.name]
            gauges.pool = gauges.pool or pool
        for r in pool.runners:
            if r.executor.observer is None:
                r.executor.observer = _JobObserver(self._table(r.queue.name))
                self._watched.append(r.executor)
        if pool not in self._pools:
            self._pools.append(pool)

    def _instrument_queue(self, queue: Queue) -> None:
        _check_free(queue, f"queue {queue.name!r}", self)
        if queue.observer is not None:
            return
        gauges = self._gauges.get(queue.name)
        if gauges is None:  # a second Queue object of the same name shares the first's gauges
            gauges = self._gauges[queue.name] = _QueueGauges(queue, self.timeout)
        gauges.loop = gauges.loop or _running_loop()
        queue.observer = _EnqueueObserver(self._table(queue.name), gauges)
        self._watched.append(queue)

    def _table(self, queue: str) -> _TaskTable:
        with self._lock:
            return self._tables.setdefault(queue, _TaskTable(self, queue))

    def close(self) -> None:
        """Stop watching what ``instrument()`` was given and unregister from the registry
        (the counts are dropped with it); the targets may then be instrumented again."""
        for target in self._watched:
            if getattr(target.observer, "metrics", None) is self:
                target.observer = None
        self._watched.clear()
        self._pools.clear()
        self._gauges.clear()
        with self._lock:
            self._tables.clear()
        self.registry.unregister(self)

    async def refresh(self) -> None:
        """Read the queue-wide gauges from Redis now (on the caller's loop, which must be the
        one that uses the queues): for a page served from that loop, whose scrape cannot wait
        for Redis (see docs/metrics.md)."""
        await asyncio.gather(*(g._read() for g in list(self._gauges.values())))

    # -- the collector -------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (what the registry checks names with)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The metric families with their samples (the scrape; from any thread). Waits up to
        ``timeout`` for Redis's numbers, never from the queue's own event loop."""
        waits = [f for g in list(self._gauges.values()) if (f := g.request()) is not None]
        if waits:
            concurrent.futures.wait(waits, timeout=self.timeout)
        families = self._families()
        counters, (duration, wait), gauges = families[:6], families[6:8], families[8:]
        with self._lock:  # a copy: the event loop may add a task meanwhile
            tables = [(t.queue, list(t.tasks.items())) for t in self._tables.values()]
        for queue, tasks in tables:
            for task, s in tasks:
                labels = [queue, task]
                for family, value in zip(counters, s.values(), strict=True):
                    family.add_metric(labels, value)
                duration.add_metric(labels, self._buckets(s.duration), s.duration_sum)
                wait.add_metric(labels, self._buckets(s.wait), s.wait_sum)
        self._gauge_samples(*gauges)
        yield from families

    def _families(self) -> list[Any]:
        return [
            *(CounterMetricFamily(name, text, labels=_LABELS) for name, text in _COUNTERS),
            HistogramMetricFamily(*_DURATION, labels=_LABELS),
            HistogramMetricFamily(*_WAIT, labels=_LABELS),
            GaugeMetricFamily("aiotaskq_queue_jobs", "Jobs of the queue by status (Redis)", labels=["queue", "status"]),
            GaugeMetricFamily("aiotaskq_pools", "Live pools of the queue, of any process (Redis)", labels=["queue"]),
            GaugeMetricFamily("aiotaskq_pool_running_jobs", "Jobs this process's pools run", labels=["queue"]),
            GaugeMetricFamily("aiotaskq_pool_concurrency", "Concurrency of this process's pools", labels=["queue"]),
        ]  # fmt: skip

    def _buckets(self, counts: Sequence[int]) -> list[tuple[str, float]]:
        """Cumulative buckets, +Inf last (its count, the histogram's, is the sum of the copy)."""
        counts = list(counts)  # one copy: the buckets add up whatever the loop writes meanwhile
        out, total = [], 0
        for bound, n in zip(self.buckets, counts, strict=False):
            total += n
            out.append((_go_float(bound), float(total)))
        out.append(("+Inf", float(total + counts[-1])))
        return out

    def _gauge_samples(
        self,
        jobs: GaugeMetricFamily,
        pools: GaugeMetricFamily,
        running: GaugeMetricFamily,
        concurrency: GaugeMetricFamily,
    ) -> None:
        for name, g in list(self._gauges.items()):
            snapshot = g.snapshot
            if snapshot is None:  # never read: nothing rather than a made-up zero
                continue
            counts, live = snapshot
            for status, n in counts.items():
                jobs.add_metric([name, status.value], n)
            pools.add_metric([name], live)
        busy: dict[str, int] = {}
        slots: dict[str, int] = {}
        for pool in list(self._pools):
            for r in pool.runners:  # one per shard of a sharded queue
                busy[r.queue.name] = busy.get(r.queue.name, 0) + len(r.running)
            for q in pool.queues:
                slots[q.name] = slots.get(q.name, 0) + pool.concurrency
        for name, n in busy.items():
            running.add_metric([name], n)
        for name, n in slots.items():
            concurrency.add_metric([name], n)


class MetricsServer:
    """The HTTP server ``serve()`` started (a daemon thread): ``port`` it listens on,
    ``metrics`` it serves, ``close()`` (or ``with``) to stop it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, metrics: Metrics) -> None:
        self._server = server
        self._thread = thread
        self.metrics = metrics

    @property
    def port(self) -> int:
        """The port it listens on (the one given, or the one picked for port 0)."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving and close the socket (blocks up to half a second: the server's poll)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve(
    port: int,
    target: Pool | Queue,
    host: str = "0.0.0.0",  # noqa: S104 - a worker's metrics are scraped from other machines
    *,
    metrics: Metrics | None = None,
) -> MetricsServer:
    """Instrument ``target`` (a Pool or a Queue) and serve its metrics over HTTP on
    ``host:port`` (``/metrics``, from a thread of its own), with ``metrics`` (default: a new
    Metrics on ``prometheus_client.REGISTRY``). Returns the server: ``close()`` stops it.

    Call it from the event loop that runs the pool (or uses the queue) when you can: the
    queue-wide gauges are read there. ``aiotaskq worker --metrics-port P`` is ``serve(P, pool)``."""
    metrics = Metrics() if metrics is None else metrics
    metrics.instrument(target)
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server, thread, metrics)


def _check_free(target: Executor | Queue, what: str, metrics: Metrics) -> None:
    observer = target.observer
    if observer is not None and getattr(observer, "metrics", None) is not metrics:
        raise ValueError(f"target: the {what} is watched already (by another Metrics, or an observer of its own)")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
