"""Stopping a running attempt (Claimed.stop): a plain asyncio cancellation of the
worker task, which must never leak into the next job that worker runs."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from _util import run_pool, wait_status

from aiotaskq import JobStatus, Queue
from aiotaskq._executor import Claimed, Executor
from aiotaskq.job import encode_payload


def claimed(task: str) -> Claimed:
    return Claimed(id="j", task=task, payload=encode_payload((), {}), attempt=1, retries=0, timeout=None, pool_id="P")


async def test_a_stop_the_task_never_saw_is_absorbed_and_the_job_succeeds(queue: Queue) -> None:
    """stop() lands after the task's last await: the cancellation is still pending
    when the task returns. The attempt succeeded, and the worker's next await must
    not be cancelled."""
    holder: dict[str, Claimed] = {}

    @queue.task(name="self.stop")
    async def stops_itself() -> str:
        holder["job"].stop("abort")  # no await after this
        return "done"

    executor = Executor(queue.tasks, queue.scripts, 60_000)
    job = holder["job"] = claimed("self.stop")
    outcome = await executor.run(job)
    assert outcome is not None and outcome.kind == "succeeded"
    await asyncio.sleep(0.01)  # would raise CancelledError if the stop leaked
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_stopped_job_is_cancelled_and_the_pending_count_is_withdrawn(queue: Queue) -> None:
    started = anyio.Event()

    @queue.task(name="slow")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(10)

    executor = Executor(queue.tasks, queue.scripts, 60_000)
    job = claimed("slow")
    outcome: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            outcome.append(await executor.run(job))
            await asyncio.sleep(0.01)  # the worker lives on
            task = asyncio.current_task()
            assert task is not None
            outcome.append(task.cancelling())

        tg.start_soon(run)
        await started.wait()
        job.stop("abort")
    assert outcome[0].kind == "cancelled" and outcome[1] == 0


async def test_a_worker_that_ran_a_cancelled_job_runs_the_next_one_normally(queue: Queue) -> None:
    """One worker: the first job swallows its cancellation and returns; the second,
    on the same worker task, must run to its end."""
    started = anyio.Event()

    @queue.task(name="swallow")
    async def swallow() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    @queue.task(name="after")
    async def after() -> str:
        await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        return "ran"

    async with run_pool(queue, concurrency=1):
        first = await swallow.enqueue()
        await started.wait()
        await wait_status(queue, first.id, JobStatus.ACTIVE)
        second = await after.enqueue()
        await first.cancel()
        assert await first.result(timeout=5) == "swallowed"  # it returned: its result is kept
        assert await second.result(timeout=5) == "ran"
        assert (await second.info()).attempts == 1
