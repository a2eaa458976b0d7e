"""Pause and resume (``queue.pause()``, ``resume()``, ``paused()``): a paused queue hands out
nothing, across pools, within a claim; running jobs finish; enqueue still works; resume wakes
idle pools at once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from _util import must, run_pool, wait_for, wait_idle
from test_cli import cli_env, run_cli

from aiotaskq import Job, JobStatus, Queue


async def stays(cond: Callable[[], Awaitable[bool] | bool], seconds: float) -> bool:
    """True when ``cond()`` never became true within ``seconds`` (a bounded wait for what must not happen)."""
    with anyio.move_on_after(seconds):
        await wait_for(cond, seconds + 1, "it")
        return False
    return True


async def test_a_paused_queue_starts_nothing_more_and_running_jobs_finish(queue: Queue) -> None:
    started: list[float] = []
    finished: list[float] = []

    @queue.task
    async def slow(n: int) -> int:
        started.append(time.monotonic())
        await anyio.sleep(0.05)
        finished.append(time.monotonic())
        return n

    jobs = await slow.enqueue_many([(n,) for n in range(200)])
    async with run_pool(queue, concurrency=4, batch_size=4), run_pool(queue, concurrency=4, batch_size=4):
        await wait_for(lambda: len(started) >= 8, 5, "both pools to run jobs")
        assert await queue.pause() is True
        assert await queue.pause() is False  # already
        assert await queue.paused() is True
        at_pause = len(started)
        await wait_for(lambda: len(finished) == len(started), 5, "the running jobs to finish")
        assert len(started) <= at_pause + 16  # at most what the pools had claimed (and buffered) already
        settled = len(started)
        assert await stays(lambda: len(started) > settled, 0.5)  # nothing more starts
        counts = await queue.counts()
        assert counts[JobStatus.ACTIVE] == 0 and counts[JobStatus.QUEUED] == 200 - settled
        assert await queue.enqueue(slow.name, args=(999,)) is not None  # enqueue still works
        assert (await queue.counts())[JobStatus.QUEUED] == 200 - settled + 1
        assert await queue.resume() is True
        assert await queue.paused() is False
        assert [await j.result(timeout=20) for j in jobs if j is not None] == list(range(200))


async def test_an_idle_pool_gets_no_hand_off_while_paused_and_is_woken_by_resume(queue: Queue) -> None:
    @queue.task
    async def echo(x: int) -> int:
        return x

    async with run_pool(queue, idle=True, poll_interval=30) as pool:  # only a wake-up would end its wait
        assert await queue.pause()
        job = must(await echo.enqueue(7))
        assert await stays(lambda: _status_is(job, JobStatus.SUCCEEDED), 0.5)
        assert await job.status() is JobStatus.QUEUED  # not handed to the idle pool
        await wait_idle(pool)  # still parked
        t0 = time.monotonic()
        assert await queue.resume()
        assert await job.result(timeout=5) == 7
        assert time.monotonic() - t0 < 2  # woken, not after the 30 s poll interval


async def _status_is(job: Job, status: JobStatus) -> bool:
    return await job.status() is status


async def test_due_scheduled_jobs_wait_too_and_run_on_resume(queue: Queue) -> None:
    @queue.task
    async def later() -> str:
        return "ran"

    await queue.pause()
    job = must(await later.options(delay=0.2).enqueue())
    async with run_pool(queue):
        assert await stays(lambda: _status_is(job, JobStatus.SUCCEEDED), 0.8)
        await queue.resume()
        assert await job.result(timeout=5) == "ran"


async def test_a_sharded_queue_pauses_every_shard(redis_url: str) -> None:
    q = Queue(f"pause-sharded-{os.getpid()}", url=redis_url, shards=3)
    try:
        assert await q.pause()
        assert all([await p.redis.exists(p.keys.paused) for p in q.parts])
        assert await q.paused()
        assert await q.resume()
        assert not any([await p.redis.exists(p.keys.paused) for p in q.parts])
    finally:
        await q.close()


async def test_the_cli_pauses_resumes_and_info_says_so(queue: Queue, redis_url: str) -> None:
    target = ["--queue", queue.name, "--url", redis_url]
    out = await run_cli("pause", *target, env=cli_env(url=redis_url))
    assert out.returncode == 0 and b"paused queue" in out.stdout
    assert await queue.paused()
    again = await run_cli("pause", *target, env=cli_env(url=redis_url))
    assert again.returncode == 0 and b"already paused" in again.stdout
    info = await run_cli("info", *target, "--json", env=cli_env(url=redis_url))
    assert json.loads(info.stdout)[0]["paused"] is True
    text = await run_cli("info", *target, env=cli_env(url=redis_url))
    assert b"(paused)" in text.stdout
    out = await run_cli("resume", *target, env=cli_env(url=redis_url))
    assert out.returncode == 0 and b"resumed queue" in out.stdout
    assert not await queue.paused()


@pytest.mark.parametrize("command", ["pause", "resume"])
async def test_pause_and_resume_need_a_target(command: str) -> None:
    out = await run_cli(command, env=cli_env())
    assert out.returncode == 2


async def test_the_docs_example(redis_url: str) -> None:
    from docs.examples import pause

    try:
        assert await pause.main(redis_url) == [f"invoice {n} charged" for n in range(3)]
    finally:
        await pause.queue.purge(JobStatus.SUCCEEDED)
        await pause.queue.close()
