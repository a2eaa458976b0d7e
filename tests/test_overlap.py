"""Recurring tasks that must not overlap (``overlap=False``: a tick is skipped while the previous
tick's job is pending) and that run when a pool starts (``run_at_startup=True``)."""

from __future__ import annotations

import logging

import anyio
import pytest
from _util import run_pool, wait_for

from aiotaskq import JobStatus, Queue


async def test_a_non_overlapping_schedule_skips_ticks_while_its_job_runs(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    release = anyio.Event()
    runs: list[str] = []

    @queue.task(every=0.1, overlap=False)
    async def report() -> None:
        runs.append("start")
        await release.wait()

    with caplog.at_level(logging.WARNING, logger="aiotaskq"):
        async with run_pool(queue, concurrency=5):
            await wait_for(lambda: runs == ["start"], 5, "the first run")
            await wait_for(lambda: caplog.text.count("skipped: the previous tick's job is still pending") >= 3,
                           5, "three ticks skipped")  # fmt: skip
            assert runs == ["start"]  # five free slots, and still one run at a time
            release.set()
            await wait_for(lambda: len(runs) >= 2, 5, "a tick after the run ended")
    [info] = await queue.schedules()
    assert info.overlap is False


async def test_an_overlapping_schedule_runs_its_ticks_side_by_side(queue: Queue) -> None:
    release = anyio.Event()
    running = 0
    most = 0

    @queue.task(every=0.1)
    async def report() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    async with run_pool(queue, concurrency=5):
        await wait_for(lambda: most >= 2, 5, "two runs at once")
        release.set()


async def test_a_runtime_schedule_can_be_non_overlapping(queue: Queue) -> None:
    info = await queue.schedule("sync", "t.sync", every=60, overlap=False)
    assert info.overlap is False
    with pytest.raises(ValueError, match="overlap"):
        await queue.schedule("bad", "t.sync", every=60, overlap="no")  # type: ignore[arg-type]


async def test_run_at_startup_runs_once_for_pools_that_start_together(queue: Queue) -> None:
    release = anyio.Event()
    runs: list[str] = []

    @queue.task(cron="0 0 1 1 *", run_at_startup=True)  # once a year, and at start-up
    async def warm_cache() -> None:
        runs.append("run")
        await release.wait()

    async with run_pool(queue), run_pool(queue):
        await wait_for(lambda: runs == ["run"], 5, "the start-up run")
        startup = queue.job(f"schedule:{warm_cache.name}:startup")
        assert await startup.status() is JobStatus.ACTIVE
        release.set()
        await startup.result(timeout=5)
    assert runs == ["run"]  # two pools, one run


def test_the_flags_only_apply_to_recurring_tasks() -> None:
    q = Queue("flags")
    with pytest.raises(ValueError, match="only apply to a recurring task"):

        @q.task(overlap=False)
        async def a() -> None: ...

    with pytest.raises(ValueError, match="only apply to a recurring task"):

        @q.task(run_at_startup=True)
        async def b() -> None: ...

    with pytest.raises(ValueError, match="run_at_startup: expected True or False"):

        @q.task(every=5, run_at_startup=1)  # type: ignore[call-overload, untyped-decorator]
        async def c() -> None: ...


async def test_the_docs_example_skips_the_ticks_of_a_slow_sync_and_warms_the_cache_at_startup(redis_url: str) -> None:
    from docs.examples import overlap

    warmed, started_meanwhile, skipped = await overlap.main(redis_url)
    assert warmed == "cache warmed"  # the start-up run of a nightly task
    assert started_meanwhile == 1  # while three ticks went by, only the first sync ran
    assert skipped >= 3
