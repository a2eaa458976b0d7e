"""``task.options(after=[...])``: a job runs once every parent succeeded; a parent that ends
failed or cancelled (or is purged) fails it with DependencyFailed naming the parent,
transitively; a worker SIGKILLed mid-chain loses nothing and runs no step twice."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from _util import must, run_pool, wait_for
from _workers import workers

from aiotaskq import DependencyFailed, JobFailed, JobNotFound, JobStatus, Queue
from aiotaskq._display import job_rows


async def test_a_job_runs_after_every_parent_succeeded(queue: Queue) -> None:
    order: list[str] = []

    @queue.task
    async def step(name: str, seconds: float = 0.0) -> str:
        await anyio.sleep(seconds)
        order.append(name)
        return name

    a = must(await step.enqueue("a", 0.2))
    b = must(await step.enqueue("b", 0.05))
    c = must(await step.options(after=[a, b.id]).enqueue("c"))
    assert await c.status() is JobStatus.SCHEDULED  # waiting for its parents
    info = await c.info()
    assert info is not None and info.after == (a.id, b.id)
    assert ("after", f"{a.id}, {b.id}") in job_rows(info, 0.0)  # what `aiotaskq job` and the dashboard show
    d = must(await step.options(after=[c]).enqueue("d"))  # a chain
    async with run_pool(queue, concurrency=4):
        assert await d.result(timeout=10) == "d"
    assert set(order[:2]) == {"a", "b"} and order[2:] == ["c", "d"]  # c after both parents, d after c
    assert await queue.redis.exists(queue.keys.prefix + "deps") == 0
    assert await queue.redis.keys(queue.keys.prefix + "children:*") == []


async def test_a_parent_that_fails_fails_its_children_transitively(queue: Queue) -> None:
    ran: list[str] = []

    @queue.task
    async def boom() -> None:
        raise RuntimeError("disk full")

    @queue.task
    async def step(name: str) -> str:
        ran.append(name)
        return name

    bad = must(await boom.enqueue())
    ok = must(await step.enqueue("ok"))
    child = must(await step.options(after=[ok, bad]).enqueue("child"))
    grandchild = must(await step.options(after=[child]).enqueue("grandchild"))
    async with run_pool(queue, concurrency=2):
        with pytest.raises(DependencyFailed) as caught:
            await grandchild.result(timeout=10)
        assert caught.value.parent == child.id
        with pytest.raises(DependencyFailed) as caught:
            await child.result(timeout=1)
        assert caught.value.parent == bad.id and "ended failed" in caught.value.error
    assert ran == ["ok"]
    assert (await queue.counts())[JobStatus.FAILED] == 3
    assert await queue.redis.keys(queue.keys.prefix + "children:*") == []
    assert await queue.redis.exists(queue.keys.prefix + "deps") == 0


async def test_requeued_with_its_failed_parent_a_chain_waits_for_it_again(queue: Queue) -> None:
    """After the bug is fixed, "requeue every failed job": the parent runs again, and its
    DependencyFailed children wait for it, in chain order, instead of running at once."""
    order: list[str] = []
    broken = [True]

    @queue.task
    async def step(name: str) -> str:
        if name == "a" and broken[0]:
            raise RuntimeError("disk full")
        order.append(name)
        return name

    a = must(await step.enqueue("a"))
    b = must(await step.options(after=[a]).enqueue("b"))
    c = must(await step.options(after=[b]).enqueue("c"))
    async with run_pool(queue):
        with pytest.raises(DependencyFailed):
            await c.result(timeout=10)
    assert (await queue.counts())[JobStatus.FAILED] == 3
    assert await queue.requeue_failed([c.id]) == 0  # its parent is still failed: nothing would run it
    assert await c.status() is JobStatus.FAILED
    broken[0] = False
    assert await queue.requeue_failed() == 3
    assert [await j.status() for j in (a, b, c)] == [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.SCHEDULED]
    async with run_pool(queue, concurrency=3):
        assert await c.result(timeout=10) == "c"
    assert order == ["a", "b", "c"]
    assert (await c.info()).attempts == 1
    assert await queue.redis.exists(queue.keys.prefix + "deps") == 0


async def test_a_job_left_failed_does_not_stop_requeue_all_at_it(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oldest failed job cannot be requeued (its parent was cancelled): the batches pass
    over it (one job per batch here) and requeue every later one."""
    monkeypatch.setattr("aiotaskq.queue._BATCH", 1)

    @queue.task
    async def step(name: str) -> str:
        return name

    @queue.task
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    parent = must(await step.options(delay=3600).enqueue("parent"))
    child = must(await step.options(after=[parent]).enqueue("child"))
    assert await parent.cancel()
    with pytest.raises(DependencyFailed, match="ended cancelled"):
        await child.result(timeout=5)
    bad = [must(await boom.enqueue(n)) for n in range(3)]
    async with run_pool(queue):
        for j in bad:
            with pytest.raises(JobFailed):
                await j.result(timeout=5)
    assert await queue.requeue_failed() == 3
    assert [await j.status() for j in bad] == [JobStatus.QUEUED] * 3
    assert await child.status() is JobStatus.FAILED


async def test_a_dependency_failed_job_requeued_after_its_parent_succeeded_runs_at_once(queue: Queue) -> None:
    broken = [True]

    @queue.task
    async def step(name: str) -> str:
        if name == "a" and broken[0]:
            raise RuntimeError("flaky")
        return name

    a = must(await step.enqueue("a"))
    b = must(await step.options(after=[a]).enqueue("b"))
    async with run_pool(queue):
        with pytest.raises(DependencyFailed):
            await b.result(timeout=10)
        broken[0] = False
        assert await queue.requeue_failed([a.id]) == 1
        assert await a.result(timeout=10) == "a"
        assert await queue.requeue_failed([b.id]) == 1  # its parent succeeded since
        assert await b.result(timeout=10) == "b"


async def test_parents_that_already_ended_count_at_enqueue(queue: Queue) -> None:
    @queue.task
    async def step(name: str) -> str:
        return name

    @queue.task
    async def boom() -> None:
        raise RuntimeError("no")

    done, bad = must(await step.enqueue("done")), must(await boom.enqueue())
    async with run_pool(queue, concurrency=2):
        await done.result(timeout=5)
        with pytest.raises(JobFailed):
            await bad.result(timeout=5)
        after_done = must(await step.options(after=[done]).enqueue("next"))
        assert await after_done.result(timeout=5) == "next"
        after_bad = must(await step.options(after=[done, bad]).enqueue("never"))
        with pytest.raises(DependencyFailed, match="ended failed"):
            await after_bad.result(timeout=5)
    with pytest.raises(JobNotFound) as missing:
        await step.options(after=["no-such-job"]).enqueue("x")
    assert "no-such-job" in str(missing.value) and "not enqueued" in "".join(missing.value.__notes__)
    assert await queue.counts() == {**{s: 0 for s in JobStatus}, JobStatus.SUCCEEDED: 2, JobStatus.FAILED: 2}


async def test_cancelling_or_purging_a_parent_fails_the_children_and_cancelling_a_child_forgets_it(
    queue: Queue,
) -> None:
    @queue.task
    async def step(name: str) -> str:
        return name

    parent = must(await step.options(delay=3600).enqueue("parent"))
    child = must(await step.options(after=[parent]).enqueue("child"))
    assert await parent.cancel()
    with pytest.raises(DependencyFailed, match="ended cancelled"):
        await child.result(timeout=1)

    parent2 = must(await step.options(delay=3600).enqueue("parent2"))
    child2 = must(await step.options(after=[parent2]).enqueue("child2"))
    other = must(await step.options(after=[parent2]).enqueue("other"))
    assert await other.cancel()  # a waiting child can be cancelled; the parent forgets it
    assert await queue.redis.smembers(queue.keys.prefix + f"children:{parent2.id}") == {child2.id.encode()}
    assert await child2.reschedule(delay=10)  # a waiting child keeps waiting; only its due time moves
    assert await child2.status() is JobStatus.SCHEDULED
    assert await queue.purge(JobStatus.SCHEDULED) == 2  # parent2 and child2 (waiting ones are scheduled)
    assert await queue.redis.exists(queue.keys.prefix + "deps") == 0
    assert await queue.redis.keys(queue.keys.prefix + "children:*") == []


async def test_bad_parents_raise_at_the_point_of_the_mistake(queue: Queue, redis_url: str) -> None:
    @queue.task
    async def step() -> None:
        return None

    other = Queue(queue.name + "-other", url=redis_url)
    try:
        with pytest.raises(ValueError, match="belongs to queue"):
            step.options(after=[other.job("x")])
    finally:
        await other.close()
    for bad in ("job-id", [""], [3], 5):
        with pytest.raises(ValueError, match="after:"):
            step.options(after=bad)
    with pytest.raises(ValueError, match="cannot wait for itself"):
        await step.options(after=["me"], job_id="me").enqueue()


async def test_a_worker_killed_mid_chain_loses_nothing_and_runs_each_step_once(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    """A chain a -> b -> c; SIGKILL the worker while b runs: once it is reaped, b runs again
    (its second attempt) and then c, each step started once more at most; nothing is lost."""
    log = queue.keys.prefix + "test:chain"
    with workers(queue, redis_url, tmp_path) as ws:
        victim = ws.start()
        a = must(await queue.enqueue("fault.keyed", args=(log, 0, 0.0)))
        b = must(await queue.enqueue("fault.keyed", args=(log, 1, 30.0), job_id="chain-b"))
        c = must(await queue.enqueue("fault.keyed", args=(log, 2, 0.0), after=[b, a.id]))
        await wait_for(lambda: _has(queue, log, "start:1"), 10, "b to start on the victim")
        # a's outcome is written (an outcome still in the victim's batch would make a run again
        # after the kill: at least once, but not what this test is about)
        await wait_for(lambda: _succeeded(a), 10, "a to be recorded as succeeded")
        assert await c.status() is JobStatus.SCHEDULED
        victim.signal(signal.SIGKILL)
        victim.process.wait(5)
        ws.start()
        assert await c.result(timeout=20) == 2
        assert await b.result(timeout=1) == 1
        info = await b.info()
        assert info is not None and info.attempts == 2
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    entries = [x.decode() for x in raw]
    assert entries.count("start:0") == 1 and entries.count("start:2") == 1
    assert entries.count("start:1") == 2 and entries.count("end:1") == 1
    assert entries.index("start:2") > entries.index("end:1")


async def _succeeded(job: object) -> bool:
    from aiotaskq import Job

    assert isinstance(job, Job)
    return await job.status() is JobStatus.SUCCEEDED


async def _has(queue: Queue, log: str, entry: str) -> bool:
    return entry.encode() in await queue.redis.lrange(log, 0, -1)
