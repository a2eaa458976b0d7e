"""Producers without an event loop: ``task.enqueue_sync``, ``options(...).enqueue_sync``,
``queue.enqueue_sync``, ``job.status_sync``/``info_sync``/``result_sync``, on redis-py's
blocking client and the same scripts, from many threads at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from _util import run_pool

from aiotaskq import JobCancelled, JobFailed, JobNotFound, JobStatus, NotReplicated, Queue
from aiotaskq.testing import LocalSentinel, RedisServer


async def test_many_threads_enqueue_and_wait_for_results_while_a_pool_runs(queue: Queue) -> None:
    @queue.task
    async def square(n: int) -> int:
        return n * n

    def producer(t: int) -> list[int]:  # a thread of a WSGI server, say: no event loop here
        jobs = [square.enqueue_sync(t * 100 + i) for i in range(25)]
        return [job.result_sync(timeout=20) for job in jobs]

    async with run_pool(queue, concurrency=50):
        with ThreadPoolExecutor(16) as pool:
            results = await anyio.to_thread.run_sync(lambda: list(pool.map(producer, range(16))))
    assert results == [[(t * 100 + i) ** 2 for i in range(25)] for t in range(16)]
    assert (await queue.counts())[JobStatus.SUCCEEDED] == 16 * 25


async def test_options_names_and_reads_match_the_async_calls(queue: Queue) -> None:
    @queue.task(priority=3)
    async def report(name: str) -> str:
        return f"report {name}"

    def sync_side() -> None:
        first = report.options(job_id="nightly", delay=3600).enqueue_sync("nightly")
        assert first is not None and first.id == "nightly"
        assert report.options(job_id="nightly").enqueue_sync("again") is None  # deduplicated
        assert first.status_sync() is JobStatus.SCHEDULED
        info = first.info_sync()
        assert info.priority == 3 and info.args == ("nightly",)
        by_name = queue.enqueue_sync("other.task", args=(1, 2), kwargs={"x": 3}, priority=-5)
        assert by_name is not None
        assert by_name.info_sync().kwargs == {"x": 3} and by_name.info_sync().priority == -5
        with pytest.raises(JobNotFound):
            queue.job("no-such-job").status_sync()
        with pytest.raises(ValueError, match="priority"):
            report.options(priority=5000).enqueue_sync("bad")  # checked like the async call

    await anyio.to_thread.run_sync(sync_side)
    assert await queue.job("nightly").status() is JobStatus.SCHEDULED  # the same records the async side reads
    assert await queue.counts() == {**{s: 0 for s in JobStatus}, JobStatus.SCHEDULED: 1, JobStatus.QUEUED: 1}


async def test_result_sync_raises_as_result_does(queue: Queue) -> None:
    @queue.task
    async def boom() -> None:
        raise RuntimeError("broken")

    @queue.task(keep_result=0)
    async def unkept() -> str:  # its outcome only travels in the end message
        return "gone but delivered"

    @queue.task
    async def slow() -> None:
        await anyio.sleep(30)

    def sync_side() -> tuple[float, float]:
        failing, stuck = boom.enqueue_sync(), slow.enqueue_sync()
        lost = unkept.options(delay=0.3).enqueue_sync()  # it ends after result_sync subscribed
        assert lost is not None
        assert lost.result_sync(timeout=10) == "gone but delivered"
        with pytest.raises(JobFailed, match="broken"):
            failing.result_sync(timeout=10)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            stuck.result_sync(timeout=0.3)
        waited = time.monotonic() - t0
        t0 = time.monotonic()
        with pytest.raises(JobNotFound):
            queue.job("never-enqueued").result_sync(timeout=10)
        return waited, time.monotonic() - t0

    async with run_pool(queue, concurrency=4):
        waited, not_found = await anyio.to_thread.run_sync(sync_side)
        stuck_id = (await queue.job_ids(JobStatus.ACTIVE))[0]
        assert await queue.job(stuck_id).cancel()
        with pytest.raises(JobCancelled):
            await anyio.to_thread.run_sync(lambda: queue.job(stuck_id).result_sync(timeout=10))
    assert 0.3 <= waited < 5 and not_found < 3  # the timeout held; a missing job is not waited on for long


async def test_a_sharded_queue_and_a_sentinel_url(redis_url: str, request: pytest.FixtureRequest) -> None:
    q = Queue(f"sync-shards-{request.node.name[:16]}", url=redis_url, shards=3)

    @q.task
    async def double(n: int) -> int:
        return 2 * n

    try:
        async with run_pool(q, concurrency=10):
            jobs = await anyio.to_thread.run_sync(lambda: [double.enqueue_sync(n) for n in range(30)])
            assert len({q._shard_of(j.id).keys.prefix for j in jobs}) == 3  # spread over the shards
            assert await anyio.to_thread.run_sync(lambda: [j.result_sync(timeout=10) for j in jobs]) == [
                2 * n for n in range(30)
            ]
    finally:
        await q.purge(JobStatus.SUCCEEDED)
        await q.close()

    sentinel = await anyio.to_thread.run_sync(lambda: LocalSentinel().__enter__())
    try:
        s = Queue("sync-sentinel", url=sentinel.url)
        job = await anyio.to_thread.run_sync(lambda: s.enqueue_sync("t", args=(1,)))
        assert job is not None and await job.status() is JobStatus.QUEUED
        await s.close()
    finally:
        await anyio.to_thread.run_sync(lambda: sentinel.__exit__(None, None, None))


def test_durable_enqueue_and_a_shared_client_say_what_they_need() -> None:
    with RedisServer() as server:  # no replica: WAIT confirms nothing
        q = Queue("sync-durable", url=server.url, wait_replicas=1, wait_timeout=0.1)
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            q.enqueue_sync("t")
        q.close_sync()
    from redis.asyncio import Redis

    shared = Queue("sync-shared", redis=Redis())
    with pytest.raises(TypeError, match="url="):
        shared.enqueue_sync("t")


def test_the_client_is_made_once_however_many_threads_ask(redis_server: RedisServer) -> None:
    q = Queue("sync-once", url=redis_server.url)
    from aiotaskq._sync import sync_client

    barrier = threading.Barrier(8)

    def ask() -> int:
        barrier.wait()
        return id(sync_client(q))

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(lambda _: ask(), range(8)))) == 1
    q.close_sync()


async def test_the_docs_example_enqueues_from_threads(redis_url: str) -> None:
    from docs.examples import sync_producer

    sync_producer.queue.use_url(redis_url)

    def signups() -> list[str]:
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda n: sync_producer.handle_signup(n, f"user{n}@example.com"), range(8)))
        return [sync_producer.wait_for_welcome(i) for i in ids]

    try:
        async with run_pool(sync_producer.queue, concurrency=4):
            sent = await anyio.to_thread.run_sync(signups)
    finally:
        await sync_producer.queue.close()
    assert sent == [f"welcome mail sent to user{n}@example.com" for n in range(8)]


async def test_enqueue_many_sync_writes_every_job_in_its_shard(redis_url: str, request: pytest.FixtureRequest) -> None:
    q = Queue(f"sync-many-{request.node.name[:16]}", url=redis_url, shards=2)

    @q.task
    async def add(a: int, b: int = 0) -> int:
        return a + b

    try:
        jobs = await anyio.to_thread.run_sync(
            lambda: add.enqueue_many_sync([(n,) for n in range(250)] + [{"a": 1, "b": 2}])
        )
        assert len(jobs) == 251 and all(j is not None for j in jobs)
        assert len({q._shard_of(j.id).keys.prefix for j in jobs if j}) == 2  # both shards, 100 per call at most
        again = await anyio.to_thread.run_sync(lambda: add.options(job_id="once").enqueue_many_sync([(1,)]))
        dup = await anyio.to_thread.run_sync(lambda: add.options(job_id="once").enqueue_many_sync([(1,)]))
        assert again[0] is not None and dup == [None]
        with pytest.raises(ValueError, match="job_id"):
            add.options(job_id="x").enqueue_many_sync([(1,), (2,)])
        async with run_pool(q, concurrency=20):
            results = [await j.result(timeout=20) for j in jobs if j]
        assert results == [*range(250), 3]
    finally:
        for s in (JobStatus.SUCCEEDED, JobStatus.QUEUED):
            await q.purge(s)
        await q.close()


def test_result_sync_waits_out_a_redis_restart() -> None:
    """The job is stored (AOF, appendfsync always); Redis restarts while result_sync waits; a
    pool then runs the job: result_sync returns it, within its timeout."""
    with RedisServer(appendonly=True) as server:
        q = Queue("sync-outage", url=server.url)

        @q.task
        async def answer() -> int:
            return 42

        job = answer.enqueue_sync()
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(job.result_sync(timeout=30)))
        waiter.start()
        _until_subscribed(server.url, q.keys.done(job.id))  # result_sync is waiting on the job's end
        server.restart()  # the fault under test

        async def run_it() -> None:
            async with run_pool(q, concurrency=1):
                await job.result(timeout=20)
            await q.close()

        anyio.run(run_it)
        waiter.join(20)
        assert got == [42]
        q.close_sync()


def _until_subscribed(url: str, channel: str, timeout: float = 10.0) -> None:
    import redis

    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            sharded = r.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
            plain = r.execute_command("PUBSUB", "NUMSUB", channel)  # type: ignore[no-untyped-call]
            counts = [*sharded, *plain]
            if any(isinstance(n, int) and n > 0 for n in counts[1::2]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"nobody subscribed to {channel} within {timeout}s")
            time.sleep(0.01)
    finally:
        r.close()
