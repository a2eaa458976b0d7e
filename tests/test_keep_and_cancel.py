"""How long ended jobs are kept (the task's keep_result, KEEP_FOREVER, cancelled jobs), and
cancelling a running job once: its clean-up runs to its end, bounded by its timeout or the
pool's shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from _util import FAST, must, run_pool, wait_for, wait_scored

from aiotaskq import KEEP_FOREVER, JobCancelled, JobStatus, Pool, Queue
from aiotaskq._executor import Claimed, Executor
from aiotaskq.job import encode_payload

# -- keep times -----------------------------------------------------------------------------------


async def ttl(queue: Queue, job_id: str) -> int:
    return int(await queue.redis.pttl(queue.keys.job(job_id)))


async def test_keep_forever_keeps_ended_jobs_and_works_on_the_queue_too(redis_url: str) -> None:
    async with Queue("t-keep-forever", url=redis_url, keep_result=KEEP_FOREVER) as queue:

        @queue.task(name="q.default")
        async def default() -> int:
            return 1

        @queue.task(name="t.short", keep_result=60)
        async def short() -> int:
            return 2

        async with run_pool(queue):  # Pool() used to raise OverflowError on an infinite keep time
            a, b = await default.enqueue(), await short.enqueue()
            assert await a.result(timeout=5) == 1 and await b.result(timeout=5) == 2
        assert await ttl(queue, a.id) == -1  # no expiry
        assert 0 < await ttl(queue, b.id) <= 60_000
        assert await queue.redis.zscore(queue.keys.succeeded, a.id) is not None


async def test_a_task_keeping_its_jobs_forever_succeeds_once(queue: Queue) -> None:
    runs: list[int] = []

    @queue.task(name="forever", keep_result=float("inf"), retries=2)
    async def forever() -> str:
        runs.append(1)
        return "kept"

    async with run_pool(queue):
        job = await forever.enqueue()
        assert await job.result(timeout=5) == "kept"
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED and info.attempts == 1 and info.error is None and runs == [1]
    assert await ttl(queue, job.id) == -1


async def test_a_cancelled_job_is_kept_for_its_tasks_keep_result(queue: Queue, redis_url: str) -> None:
    started = anyio.Event()

    @queue.task(name="keep.short", keep_result=30)
    async def short() -> None:
        started.set()
        await anyio.sleep(30)

    @queue.task(name="keep.forever", keep_result=KEEP_FOREVER)
    async def forever() -> None: ...

    @queue.task(name="keep.default")
    async def default() -> None: ...

    # Queued, cancelled by a producer that knows the task: the task's keep time.
    queued = must(await short.options(delay=60).enqueue())
    kept = must(await forever.options(delay=60).enqueue())
    plain = must(await default.options(delay=60).enqueue())
    assert await queued.cancel() and await kept.cancel() and await plain.cancel()
    assert 0 < await ttl(queue, queued.id) <= 30_000
    assert await ttl(queue, kept.id) == -1
    assert 30_000 < await ttl(queue, plain.id) <= 86_400_000  # the queue's day

    async with run_pool(queue):
        # Running, cancelled: its pool records it with the task's keep time.
        running = await short.enqueue()
        await started.wait()
        assert await running.cancel()
        with pytest.raises(JobCancelled):
            await running.result(timeout=5)
        assert 0 < await ttl(queue, running.id) <= 30_000

        # Queued, cancelled by a producer that does not know the task: the keep time the pools registered.
        async with Queue(queue.name, url=redis_url) as bare:
            other = await bare.enqueue("keep.short", delay=60)
            assert other is not None and await other.cancel()
            assert 0 < await ttl(queue, other.id) <= 30_000
            unknown = await bare.enqueue("nobody.registered.this", delay=60)
            assert unknown is not None and await unknown.cancel()
            assert 30_000 < await ttl(queue, unknown.id) <= 86_400_000  # that producer's queue's keep time


# -- cancel once ----------------------------------------------------------------------------------


async def test_a_cancelled_job_finishes_its_clean_up_across_heartbeats(queue: Queue) -> None:
    """The cancel flag stays set while the job runs on: each heartbeat (0.2 s here) reports
    it again. The clean-up of 1.2 s (six heartbeats) must run to its end."""
    started = anyio.Event()
    cleaned: list[str] = []

    @queue.task(name="cleans.up")
    async def cleans_up() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            for step in range(12):
                await anyio.sleep(0.1)
                cleaned.append(f"step {step}")
            cleaned.append("done")

    async with run_pool(queue, heartbeat_interval=0.2) as pool:
        job = await cleans_up.enqueue()
        await started.wait()
        assert await job.cancel()
        with pytest.raises(JobCancelled):
            await job.result(timeout=10)
        assert cleaned[-1] == "done" and len(cleaned) == 13
        assert (await job.info()).status is JobStatus.CANCELLED
        assert pool.runners[0].running == {}


async def test_a_clean_up_after_a_cancel_is_still_bounded_by_the_jobs_timeout(queue: Queue) -> None:
    started = anyio.Event()
    cleaned: list[str] = []

    @queue.task(name="cleans.forever", timeout=1.0)
    async def cleans_forever() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            await anyio.sleep(30)
            cleaned.append("never")

    async with run_pool(queue, heartbeat_interval=0.2):
        job = await cleans_forever.enqueue()
        await started.wait()
        assert await job.cancel()
        with anyio.fail_after(5):  # the timeout (1 s) ends the clean-up
            with pytest.raises(JobCancelled):
                await job.result()
    assert cleaned == []


async def test_a_clean_up_after_a_cancel_is_bounded_by_the_shutdown_timeout(queue: Queue) -> None:
    """The pool stops while a cancelled job's clean-up runs on: after shutdown_timeout the
    shutdown cancels it again, and the job still ends cancelled (not requeued)."""
    started = anyio.Event()
    cleaned: list[str] = []

    @queue.task(name="cleans.slowly")
    async def cleans_slowly() -> None:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            await anyio.sleep(30)
            cleaned.append("never")

    pool = Pool(queue, **{**FAST, "shutdown_timeout": 0.5})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            job = await cleans_slowly.enqueue()
            await started.wait()
            assert await job.cancel()
            await wait_for(lambda: pool.runners[0].running[job.id].cancels == 1, what="the abort")
            # Two more heartbeats, each repeating the abort: no new cancellation.
            await wait_scored(queue, queue.keys.pools, pool.runners[0].pool_id, 2)
            assert pool.runners[0].running[job.id].cancels == 1
            pool.stop()
    assert cleaned == []
    assert await job.status() is JobStatus.CANCELLED


async def test_the_reaper_keeps_a_cancelled_job_for_the_keep_time_the_pools_registered(queue: Queue) -> None:
    """A cancel asked of a pool that died is recorded by the reaper: with the keep time the
    pools registered for the job's task (the keep hash), else the reaping pool's."""
    s, r = queue.scripts, queue.redis
    await r.hset(queue.keys.keep, mapping={"short": 5000})
    for job_id, task in (("a", "short"), ("b", "other")):
        (code,) = await s.run(s.enqueue([((task, 0, "", "", "", "", "", "", "", "", ""), job_id, b"\x92\x90\x80")]))
        assert code == 1
    assert await s.heartbeat("dead", register=True, info="{}", ttl_ms=60_000) == [1]
    assert len(await s.claim("dead", 2)) == 3 + 2 * 3  # a header, then id, attempt, record per job
    assert await s.cancel("a", 60_000) == 2 and await s.cancel("b", 60_000) == 2
    await r.zadd(queue.keys.pools, {"dead": 0})  # its last heartbeat long ago
    assert await s.reap(stale_ms=1000, keep_ms=120_000, own_pool_id="live") == [1, 0, 0]
    assert 0 < await ttl(queue, "a") <= 5000
    assert 60_000 < await ttl(queue, "b") <= 120_000


async def test_repeated_aborts_do_not_cut_a_clean_up_but_a_shutdown_stop_does(queue: Queue) -> None:
    """Claimed.stop: the heartbeat repeats "abort" while the cancel flag is set, and that
    cancels once; "shutdown" (the shutdown timeout passed, or a second SIGTERM/SIGINT)
    cancels the clean-up at once. The job still ends cancelled."""
    started, cleaning = anyio.Event(), anyio.Event()
    ended: list[str] = []

    @queue.task(name="cleanup")
    async def cleanup() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            cleaning.set()
            try:
                await asyncio.sleep(30)
            finally:
                ended.append("clean-up cut")

    executor = Executor(queue.tasks, queue.scripts, 60_000)
    job = Claimed(id="j", task="cleanup", payload=encode_payload((), {}), attempt=1, retries=0, timeout=None,
                  pool_id="P")  # fmt: skip
    outcome: list[Any] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                outcome.append(await executor.run(job))

            tg.start_soon(run)
            await started.wait()
            job.stop("abort")
            await cleaning.wait()
            for _ in range(5):
                job.stop("abort")
                await asyncio.sleep(0.02)
            assert job.cancels == 1 and ended == [] and outcome == []
            job.stop("shutdown")
    assert ended == ["clean-up cut"]
    assert outcome[0].kind == "cancelled" and outcome[0].n == 60_000  # the executor's keep time: the task sets none
