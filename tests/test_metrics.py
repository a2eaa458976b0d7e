"""aiotaskq.metrics: the counters and histograms of a pool's attempts and of enqueues, the
queue-wide gauges read from Redis at scrape time, the HTTP endpoint, and what happens without
prometheus_client or without Redis. Real Redis, a fresh CollectorRegistry per test."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from _util import must, run_pool, wait_for, wait_status
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aiotaskq import JobStatus, Queue
from aiotaskq._record import encode_record, record
from aiotaskq.metrics import Metrics, serve
from aiotaskq.testing import RedisServer

ENDS = ("succeeded", "failed", "retried", "cancelled")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def counts_of(registry: CollectorRegistry, queue: Queue, task: str) -> dict[str, float | None]:
    """Every counter of one task, by its short name."""
    names = ("enqueued", "started", *ENDS)
    return {n: value(registry, f"aiotaskq_jobs_{n}_total", queue=queue.name, task=task) for n in names}


async def scrape(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """A sample as a scrape sees it: from another thread, as prometheus_client's server runs it."""
    return await asyncio.to_thread(registry.get_sample_value, name, labels)


async def test_counters_and_histograms_by_task(queue: Queue) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.instrument(queue)
    started = anyio.Event()

    @queue.task(name="m.ok")
    async def ok(x: int) -> int:
        return x

    @queue.task(name="m.flaky", retries=1, backoff=(0.0, 0.0))
    async def flaky() -> None:
        raise ValueError("always")

    @queue.task(name="m.slow")
    async def slow() -> None:
        started.set()
        await anyio.sleep(30)

    oks = [await ok.enqueue(i) for i in range(3)]
    oks += [must(j) for j in await ok.enqueue_many([(3,), (4,)])]
    oks.append(must(await ok.options(job_id="once").enqueue(5)))
    assert await ok.options(job_id="once").enqueue(6) is None  # deduplicated: not counted
    bad = await flaky.enqueue()
    long = await slow.enqueue()
    assert counts_of(registry, queue, "m.ok")["enqueued"] == 6
    assert counts_of(registry, queue, "m.ok")["started"] == 0

    async with run_pool(queue, concurrency=4) as pool:
        metrics.instrument(pool)  # before the pool's first claim: run() has not begun yet
        with anyio.fail_after(5):
            await started.wait()
        assert await long.cancel()
        await wait_status(queue, long.id, JobStatus.CANCELLED)
        for job in oks:
            await wait_status(queue, job.id, JobStatus.SUCCEEDED)
        await wait_status(queue, bad.id, JobStatus.FAILED)

    assert counts_of(registry, queue, "m.ok") == {
        "enqueued": 6, "started": 6, "succeeded": 6, "failed": 0, "retried": 0, "cancelled": 0,
    }  # fmt: skip
    assert counts_of(registry, queue, "m.flaky") == {
        "enqueued": 1, "started": 2, "succeeded": 0, "failed": 1, "retried": 1, "cancelled": 0,
    }  # fmt: skip
    assert counts_of(registry, queue, "m.slow") == {
        "enqueued": 1, "started": 1, "succeeded": 0, "failed": 0, "retried": 0, "cancelled": 1,
    }  # fmt: skip
    labels = {"queue": queue.name, "task": "m.flaky"}
    assert value(registry, "aiotaskq_job_duration_seconds_count", **labels) == 2
    assert value(registry, "aiotaskq_job_wait_seconds_count", **labels) == 2
    ok_labels = {"queue": queue.name, "task": "m.ok"}
    assert value(registry, "aiotaskq_job_duration_seconds_count", **ok_labels) == 6
    assert value(registry, "aiotaskq_job_duration_seconds_bucket", **ok_labels, le="+Inf") == 6
    # A no-op's run time: well under a second, and not nothing.
    assert 0 < cast(float, value(registry, "aiotaskq_job_duration_seconds_sum", **ok_labels)) < 1
    slow_sum = value(registry, "aiotaskq_job_duration_seconds_sum", queue=queue.name, task="m.slow")
    assert slow_sum is not None and slow_sum > 0


async def _backdate(queue: Queue, job_id: str, *, enq_ago: float, due_ago: float | None = None) -> None:
    """Move a waiting job's enqueue time (and due time) into the past, as if it had waited."""
    k = queue.keys
    raw = await queue.redis.hget(k.jobs, job_id)
    assert isinstance(raw, bytes)
    fields = record(raw)
    now_ms = time.time() * 1000
    fields[b"enq_at"] = str(round(now_ms - enq_ago * 1000)).encode()
    if due_ago is not None:
        fields[b"due_at"] = str(round(now_ms - due_ago * 1000)).encode()
    await queue.redis.hset(k.jobs, job_id, encode_record(fields))


async def test_wait_histogram_measures_from_the_due_time(queue: Queue) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    @queue.task(name="m.waited")
    async def waited() -> None:
        pass

    @queue.task(name="m.delayed")
    async def delayed() -> None:
        pass

    a, b = await waited.enqueue(), await delayed.enqueue()
    await _backdate(queue, a.id, enq_ago=10)  # no delay: waited from its enqueue, 10 s ago
    await _backdate(queue, b.id, enq_ago=60, due_ago=5)  # due 5 s ago: it waited 5 s, not 60
    async with run_pool(queue) as pool:
        metrics.instrument(pool)
        await wait_status(queue, a.id, JobStatus.SUCCEEDED)
        await wait_status(queue, b.id, JobStatus.SUCCEEDED)

    a_wait = cast(float, value(registry, "aiotaskq_job_wait_seconds_sum", queue=queue.name, task="m.waited"))
    b_wait = cast(float, value(registry, "aiotaskq_job_wait_seconds_sum", queue=queue.name, task="m.delayed"))
    assert 10 <= a_wait < 15
    assert 5 <= b_wait < 10
    # In the buckets: 10.x s is over le=10 and under le=30; 5.x s over le=5, under le=10.
    a_labels = {"queue": queue.name, "task": "m.waited"}
    assert value(registry, "aiotaskq_job_wait_seconds_bucket", **a_labels, le="10.0") == 0
    assert value(registry, "aiotaskq_job_wait_seconds_bucket", **a_labels, le="30.0") == 1
    b_labels = {"queue": queue.name, "task": "m.delayed"}
    assert value(registry, "aiotaskq_job_wait_seconds_bucket", **b_labels, le="5.0") == 0
    assert value(registry, "aiotaskq_job_wait_seconds_bucket", **b_labels, le="10.0") == 1


async def test_an_attempt_cut_short_at_shutdown_counts_in_no_end(queue: Queue) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    started = anyio.Event()

    @queue.task(name="m.hang")
    async def hang() -> None:
        started.set()
        await anyio.sleep(30)

    metrics.instrument(queue)
    job = await hang.enqueue()
    async with run_pool(queue, shutdown_timeout=0.1) as pool:
        metrics.instrument(pool)
        with anyio.fail_after(5):
            await started.wait()
    await wait_status(queue, job.id, JobStatus.QUEUED)  # handed back, uncharged
    assert counts_of(registry, queue, "m.hang") == {
        "enqueued": 1, "started": 1, "succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0,
    }  # fmt: skip
    assert value(registry, "aiotaskq_job_duration_seconds_count", queue=queue.name, task="m.hang") == 0


async def test_queue_gauges_match_counts_and_pool_gauges(queue: Queue) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.instrument(queue)
    started = anyio.Event()

    @queue.task(name="m.hold")
    async def hold() -> None:
        started.set()
        await anyio.sleep(30)

    @queue.task(name="m.noop")
    async def noop() -> None:
        pass

    # Read on the queue's own loop (the test's), a scrape cannot wait for Redis: a queue never
    # read shows no gauge at all rather than made-up zeros.
    assert value(registry, "aiotaskq_queue_jobs", queue=queue.name, status="queued") is None
    later = must(await noop.options(delay=300).enqueue())
    for _ in range(3):
        await noop.enqueue()
    assert await scrape(registry, "aiotaskq_queue_jobs", queue=queue.name, status="queued") == 3
    assert await scrape(registry, "aiotaskq_pools", queue=queue.name) == 0
    assert await scrape(registry, "aiotaskq_pool_concurrency", queue=queue.name) is None  # no pool here

    held = await hold.enqueue()
    async with run_pool(queue, concurrency=3) as pool:
        metrics.instrument(pool)
        with anyio.fail_after(5):
            await started.wait()

        async def settled() -> bool:
            c = await queue.counts()
            return c[JobStatus.SUCCEEDED] == 3 and c[JobStatus.ACTIVE] == 1

        await wait_for(settled, what="3 jobs succeeded and 1 running")
        counts = await queue.counts()
        for status, n in counts.items():
            assert await scrape(registry, "aiotaskq_queue_jobs", queue=queue.name, status=status.value) == n
        assert counts[JobStatus.SCHEDULED] == 1 and counts[JobStatus.ACTIVE] == 1
        assert await scrape(registry, "aiotaskq_pools", queue=queue.name) == 1
        assert await scrape(registry, "aiotaskq_pool_running_jobs", queue=queue.name) == 1
        assert await scrape(registry, "aiotaskq_pool_concurrency", queue=queue.name) == 3
        assert await held.cancel()
        await wait_status(queue, held.id, JobStatus.CANCELLED)
        assert await scrape(registry, "aiotaskq_pool_running_jobs", queue=queue.name) == 0
    assert await later.cancel()
    assert await scrape(registry, "aiotaskq_queue_jobs", queue=queue.name, status="cancelled") == 2
    assert await scrape(registry, "aiotaskq_pools", queue=queue.name) == 0  # the pool left


async def test_sharded_queue_gauges(redis_url: str, queue: Queue) -> None:
    sharded = Queue(queue.name + "-sh", url=redis_url, shards=2)
    try:
        registry = CollectorRegistry()
        metrics = Metrics(registry)

        @sharded.task(name="m.noop")
        async def noop() -> None:
            pass

        jobs = [await noop.options(delay=300).enqueue() for _ in range(4)]
        async with run_pool(sharded, idle=True) as pool:
            metrics.instrument(pool)
            name = sharded.name
            assert await scrape(registry, "aiotaskq_queue_jobs", queue=name, status="scheduled") == 4
            assert await scrape(registry, "aiotaskq_pools", queue=name) == 1
            assert await scrape(registry, "aiotaskq_pool_concurrency", queue=name) == pool.concurrency
        for job in jobs:
            assert await must(job).cancel()
    finally:
        await sharded.close()


async def test_http_endpoint(queue: Queue) -> None:
    @queue.task(name="m.ok")
    async def ok() -> None:
        pass

    registry = CollectorRegistry()
    async with run_pool(queue, concurrency=2) as pool:
        with serve(0, pool, host="127.0.0.1", metrics=Metrics(registry)) as server:
            job = await ok.enqueue()
            await wait_status(queue, job.id, JobStatus.SUCCEEDED)
            url = f"http://127.0.0.1:{server.port}/metrics"

            def get() -> str:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return cast(bytes, response.read()).decode()

            page = await asyncio.to_thread(get)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    families = set()
    for family in text_string_to_metric_families(page):
        families.add((family.name, family.type))
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert {
        ("aiotaskq_jobs_enqueued", "counter"), ("aiotaskq_jobs_started", "counter"),
        ("aiotaskq_jobs_succeeded", "counter"), ("aiotaskq_jobs_failed", "counter"),
        ("aiotaskq_jobs_retried", "counter"), ("aiotaskq_jobs_cancelled", "counter"),
        ("aiotaskq_job_duration_seconds", "histogram"), ("aiotaskq_job_wait_seconds", "histogram"),
        ("aiotaskq_queue_jobs", "gauge"), ("aiotaskq_pools", "gauge"),
        ("aiotaskq_pool_running_jobs", "gauge"), ("aiotaskq_pool_concurrency", "gauge"),
    } <= families  # fmt: skip
    task = (("queue", queue.name), ("task", "m.ok"))
    assert samples[("aiotaskq_jobs_enqueued_total", task)] == 1
    assert samples[("aiotaskq_jobs_succeeded_total", task)] == 1
    assert samples[("aiotaskq_job_duration_seconds_count", task)] == 1
    assert samples[("aiotaskq_queue_jobs", (("queue", queue.name), ("status", "succeeded")))] == 1
    assert samples[("aiotaskq_pools", (("queue", queue.name),))] == 1
    assert samples[("aiotaskq_pool_concurrency", (("queue", queue.name),))] == 2
    with pytest.raises(OSError):  # closed: nothing listens there any more
        await asyncio.to_thread(urllib.request.urlopen, url, timeout=2)


async def test_a_scrape_while_redis_is_down_serves_the_last_values() -> None:
    with RedisServer() as server:
        q = Queue("m-down", url=server.url)
        try:
            registry = CollectorRegistry()
            metrics = Metrics(registry, timeout=0.5)
            metrics.instrument(q)
            await q.enqueue("m.any")
            assert await scrape(registry, "aiotaskq_queue_jobs", queue=q.name, status="queued") == 1
            server.stop()
            began = time.monotonic()
            assert await scrape(registry, "aiotaskq_queue_jobs", queue=q.name, status="queued") == 1
            assert await scrape(registry, "aiotaskq_pools", queue=q.name) == 0
            took = time.monotonic() - began
            assert took < 2.5, f"two scrapes took {took:.2f}s with Redis down"
            assert value(registry, "aiotaskq_jobs_enqueued_total", queue=q.name, task="m.any") == 1
        finally:
            with anyio.move_on_after(2):
                await q.close()


def test_import_error_names_the_extra() -> None:
    code = textwrap.dedent("""
        import sys

        class NoPrometheus:
            def find_spec(self, name, path=None, target=None):
                if name == "prometheus_client" or name.startswith("prometheus_client."):
                    raise ImportError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, NoPrometheus())
        try:
            import aiotaskq.metrics
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'aiotaskq[metrics]'" in out.stdout, out
    assert "prometheus_client" in out.stdout


async def test_one_observer_per_target(queue: Queue) -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.instrument(queue)
    first.instrument(queue)  # again: no change
    with pytest.raises(ValueError, match="watched already"):
        second.instrument(queue)
    with pytest.raises(TypeError, match="Pool or a Queue"):
        first.instrument(cast(Any, "emails"))
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)  # one Metrics per registry


async def test_the_worker_command_serves_metrics_on_its_port(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    from _workers import workers

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with workers(queue, redis_url, tmp_path) as ws:
        w = ws.start("--metrics-port", str(port))
        job = await queue.enqueue("fault.add", args=(2, 3))
        assert job is not None and await job.result(timeout=15) == 5

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())

        text = await anyio.to_thread.run_sync(scrape)
        assert f'aiotaskq_jobs_succeeded_total{{queue="{queue.name}",task="fault.add"}} 1.0' in text, text[-2000:]
        assert f"Prometheus metrics at http://0.0.0.0:{port}/metrics" in w.log
