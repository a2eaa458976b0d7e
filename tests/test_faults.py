"""Faults: workers SIGKILLed or SIGTERMed mid-job, a poison job, Redis restarting, a pool
declared dead that comes back. Workers run as subprocesses (``python -m aiotaskq worker
tests.apps.faultapp:queue``); tests enqueue by task name and assert on Redis state."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio
import pytest
from _util import run_pool
from _workers import Worker, marker_for, pool_ids, runs, wait_for, workers

from aiotaskq import JobStatus, Pool, Queue
from aiotaskq.testing import RedisServer

# -- 1. SIGKILL mid-job -------------------------------------------------------------------------


async def test_sigkilled_worker_job_is_finished_by_another_pool(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    marker = marker_for(queue)
    job = await queue.enqueue("fault.stall_first", args=(marker, 60.0), retries=1)
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start()
        await wait_for(lambda: _eq(runs(queue, marker), 1), "the job to start on worker A")
        info = await job.info()
        assert info.status is JobStatus.ACTIVE
        assert info.pool_id is not None and f":{a.pid}:" in info.pool_id
        a.kill()
        assert a.process.returncode == -signal.SIGKILL
        assert await job.status() is JobStatus.ACTIVE  # nobody has noticed yet

        b = ws.start()
        result = await job.result(timeout=15)
    assert result == {"run": 2, "pid": b.pid}
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 2
    assert info.pool_id is not None and f":{b.pid}:" in info.pool_id
    assert await runs(queue, marker) == 2
    assert "reaped 1 dead pool(s): 1 job(s) requeued" in b.log


# -- 2. a poison job ----------------------------------------------------------------------------


async def test_job_that_kills_its_worker_ends_failed(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    marker = marker_for(queue)
    job = await queue.enqueue("fault.suicide", args=(marker,), retries=1)
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        with anyio.fail_after(30):
            while await job.status() is not JobStatus.FAILED:
                if not any(w.alive() for w in ws.started):
                    assert len(ws.started) < 4, "the poison job is still going round after 3 workers"
                    ws.start()  # a supervisor restarting the dead worker
                await anyio.sleep(0.02)
        last = ws.started[-1]
        assert len(ws.started) == 3
        assert [w.process.returncode for w in ws.started[:2]] == [-signal.SIGKILL] * 2
        assert last.alive()
        info = await job.info()
        assert info.status is JobStatus.FAILED
        assert info.attempts == 2
        assert info.error is not None and info.error.startswith("WorkerLost:")
        assert "no retries are left" in info.error
        counts = await queue.counts()
        assert counts[JobStatus.FAILED] == 1
        assert counts[JobStatus.QUEUED] == counts[JobStatus.ACTIVE] == counts[JobStatus.SCHEDULED] == 0
        assert await runs(queue, marker) == 2
        # The last worker is alive and well: it runs the next job.
        ok = await queue.enqueue("fault.add", args=(2, 3))
        assert ok is not None
        assert await ok.result(timeout=5) == 5
        assert last.alive()


# -- 3. SIGTERM ---------------------------------------------------------------------------------


async def test_sigterm_mid_job_requeues_it_uncharged(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    marker = marker_for(queue)
    job = await queue.enqueue("fault.stall_first", args=(marker, 60.0), retries=0)
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start("--shutdown-timeout", "0.3")
        await wait_for(lambda: _eq(runs(queue, marker), 1), "the job to start")
        a.signal(signal.SIGTERM)
        assert await a.exited(10) == 0
        info = await job.info()
        assert info.status is JobStatus.QUEUED
        assert info.attempts == 0  # a shutdown is not charged to the job's retries
        assert await pool_ids(queue) == []  # the pool left cleanly
        assert "received SIGTERM" in a.log

        b = ws.start()
        assert await job.result(timeout=10) == {"run": 2, "pid": b.pid}
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 1
    assert info.error is None


async def test_sigterm_waits_for_a_job_that_ends_in_time(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    marker = marker_for(queue)
    job = await queue.enqueue("fault.stall_first", args=(marker, 1.0))
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start("--shutdown-timeout", "10")
        await wait_for(lambda: _eq(runs(queue, marker), 1), "the job to start")
        a.signal(signal.SIGTERM)
        assert await a.exited(10) == 0
    info = await job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 1
    assert info.result == {"run": 1, "pid": a.pid}
    assert await pool_ids(queue) == []


# -- 4. Redis goes away -------------------------------------------------------------------------


async def test_pool_survives_redis_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiotaskq")
    with RedisServer(appendonly=True) as server:
        q = Queue("restart", url=server.url)

        @q.task
        async def work(x: int, seconds: float) -> int:
            await anyio.sleep(seconds)
            return x * 10

        # stale_timeout well above the outage: the pool must not be taken for dead.
        pool = Pool(q, concurrency=4, poll_interval=0.2, heartbeat_interval=0.2, stale_timeout=10, shutdown_timeout=2)
        exited = anyio.Event()

        async def serve() -> None:
            try:
                await pool.run()
            finally:
                exited.set()

        try:
            with anyio.fail_after(40):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(serve)
                    before = await work.enqueue(1, 0)
                    assert await before.result(timeout=5) == 10
                    during = await work.enqueue(2, 1.5)  # running when Redis stops, ends during the outage
                    await wait_for(lambda: _eq(during.status(), JobStatus.ACTIVE), "the long job to start")
                    due = await work.options(delay=1.0).enqueue(3, 0)  # falls due during the outage
                    assert due is not None

                    await anyio.to_thread.run_sync(server.stop)
                    await anyio.sleep(2.5)  # the outage
                    assert not exited.is_set()
                    await anyio.to_thread.run_sync(server.start)

                    after = await work.enqueue(4, 0)
                    assert await during.result(timeout=15) == 20
                    assert await due.result(timeout=15) == 30
                    assert await after.result(timeout=15) == 40
                    assert not exited.is_set()
                    for job in (during, due, after):
                        assert (await job.info()).attempts == 1
                    assert pool.pool_ids[0] in await pool_ids(q)  # still the same registration
                    pool.stop()
        finally:
            await q.close()
    trouble = [r for r in caplog.records if r.name == "aiotaskq" and r.levelno >= logging.WARNING]
    assert trouble, "the pool said nothing about losing Redis"
    assert any("connect" in r.getMessage().lower() for r in trouble), [r.getMessage() for r in trouble]


async def test_result_called_while_redis_is_down_waits_for_it() -> None:
    """result() that cannot even subscribe (Redis stopped, or just back and resetting the
    connection) keeps trying within its timeout instead of raising ConnectionError."""
    with RedisServer(appendonly=True) as server:
        q = Queue("result-outage", url=server.url)

        @q.task
        async def answer() -> int:
            return 42

        job = await answer.enqueue()
        await anyio.to_thread.run_sync(server.stop)
        got: list[int] = []
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:

                    async def wait() -> None:
                        got.append(await job.result(timeout=25))

                    tg.start_soon(wait)
                    await anyio.sleep(1.0)  # the outage, with result() already waiting
                    assert not got
                    await anyio.to_thread.run_sync(server.start)
                    async with run_pool(q, concurrency=1):
                        await wait_for(lambda: _truthy(got), "result() to return", timeout=20)
        finally:
            await q.close()
        assert got == [42]


# -- 5. fencing ---------------------------------------------------------------------------------


async def test_pool_declared_dead_cannot_overwrite_the_outcome(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    marker, release = marker_for(queue), queue.keys.prefix + "test:release"
    job = await queue.enqueue("fault.block_first", args=(marker, release), retries=1)
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start()
        await wait_for(lambda: _eq(runs(queue, marker), 1), "the job to start on A")
        first_id = (await job.info()).pool_id
        assert first_id is not None and f":{a.pid}:" in first_id

        # A's event loop is frozen: no heartbeat. B declares it dead and runs the job again.
        b = ws.start()
        assert await job.result(timeout=15) == {"run": 2, "pid": b.pid}
        assert first_id not in await pool_ids(queue)

        # A wakes up, finishes its (stale) attempt: that outcome must not land.
        await queue.redis.set(release, "1")
        await wait_for(lambda: _contains(a, "outcome of job"), "A to drop its outcome")
        await wait_for(lambda: _has_new_pool(queue, a, first_id), "A to register afresh")
        assert a.alive()
        assert a.log.count("registering afresh") == 1  # once, not once per loop that noticed
        assert len([p for p in await pool_ids(queue) if f":{a.pid}:" in p]) == 1
        info = await job.info()
        assert info.status is JobStatus.SUCCEEDED
        assert info.result == {"run": 2, "pid": b.pid}
        assert info.attempts == 2
        assert info.pool_id is not None and f":{b.pid}:" in info.pool_id
        assert await runs(queue, marker) == 2
        assert (await queue.counts())[JobStatus.SUCCEEDED] == 1

        # Under its new id, A claims and runs jobs again.
        b.signal(signal.SIGTERM)
        assert await b.exited(10) == 0
        nxt = await queue.enqueue("fault.add", args=(20, 22))
        assert nxt is not None
        assert await nxt.result(timeout=10) == 42
        new_id = (await nxt.info()).pool_id
        assert new_id is not None and f":{a.pid}:" in new_id and new_id != first_id


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def _truthy(value: list[int]) -> bool:
    return bool(value)


async def _contains(worker: Worker, text: str) -> bool:
    return text in worker.log


async def _has_new_pool(queue: Queue, worker: Worker, old_id: str) -> bool:
    return any(f":{worker.pid}:" in p and p != old_id for p in await pool_ids(queue))
