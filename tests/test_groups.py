"""``queue.group([task.call(...), ...], then=callback.call(...))``: the callback runs exactly once,
after every member ended, with the members' results in call order as its first argument; a
failed member fails it (or, with return_exceptions, takes its place as the error); a worker
SIGKILLed mid-group loses nothing and the callback still runs once."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import msgspec
import pytest
from _util import run_pool, wait_for
from _workers import workers

from aiotaskq import DependencyFailed, Group, JobCancelled, JobFailed, JobStatus, Queue


class Point(msgspec.Struct):
    x: int
    y: int


async def test_the_callback_gets_the_results_in_call_order_once(queue: Queue) -> None:
    calls: list[list[int]] = []

    @queue.task
    async def square(n: int) -> int:
        await anyio.sleep(0.01 * (5 - n))  # the first ones finish last
        return n * n

    @queue.task
    async def total(results: list[int], label: str) -> str:
        calls.append(results)
        return f"{label}: {sum(results)}"

    g = await queue.group([square.call(n) for n in range(5)], then=total.call("sum"))
    assert isinstance(g, Group) and len(g.jobs) == 5
    assert await g.then.status() is JobStatus.SCHEDULED
    info = await g.then.info()
    assert info is not None and info.after == tuple(j.id for j in g.jobs)
    async with run_pool(queue, concurrency=5):
        assert await g.result(timeout=10) == "sum: 30"
    assert calls == [[0, 1, 4, 9, 16]]  # once, in call order
    assert [await j.result(timeout=1) for j in g.jobs] == [0, 1, 4, 9, 16]


async def test_results_are_converted_to_the_callbacks_annotation(queue: Queue) -> None:
    @queue.task
    async def point(n: int) -> Point:
        return Point(n, -n)

    @queue.task
    async def furthest(points: list[Point]) -> int:
        assert all(isinstance(p, Point) for p in points)
        return max(p.x for p in points)

    g = await queue.group([point.call(n) for n in (3, 9, 1)], then=furthest.call())
    async with run_pool(queue, concurrency=3):
        assert await g.result(timeout=10) == 9


async def test_a_failed_member_fails_the_callback_or_is_passed_with_return_exceptions(queue: Queue) -> None:
    seen: list[object] = []

    @queue.task
    async def maybe(n: int) -> int:
        if n == 1:
            raise ValueError("bad input 1")
        return n

    @queue.task
    async def gather(results: list[object]) -> int:
        seen.append(results)
        return len(results)

    failing = await queue.group([maybe.call(n) for n in range(3)], then=gather.call())
    tolerant = await queue.group([maybe.call(n) for n in range(3)], then=gather.call(), return_exceptions=True)
    async with run_pool(queue, concurrency=3):
        with pytest.raises(DependencyFailed) as caught:
            await failing.result(timeout=10)
        assert caught.value.parent == failing.jobs[1].id
        assert await tolerant.result(timeout=10) == 3
    [results] = seen  # the failing group's callback never ran
    assert isinstance(results, list)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], JobFailed) and "bad input 1" in results[1].error
    assert results[1].job_id == tolerant.jobs[1].id


async def test_a_failed_member_requeued_with_its_callback_makes_the_callback_run_with_every_result(
    queue: Queue,
) -> None:
    broken = [True]
    got: list[list[int]] = []

    @queue.task
    async def size(n: int) -> int:
        if n == 1 and broken[0]:
            raise OSError("file locked")
        return n * 10

    @queue.task
    async def total(sizes: list[int]) -> int:
        got.append(sizes)
        return sum(sizes)

    g = await queue.group([size.call(n) for n in range(3)], then=total.call())
    async with run_pool(queue, concurrency=3):
        with pytest.raises(DependencyFailed):
            await g.result(timeout=10)
        broken[0] = False
        assert await queue.requeue_failed() == 2  # the member and the callback
        assert await g.result(timeout=10) == 0 + 10 + 20
    assert got == [[0, 10, 20]]


async def test_a_cancelled_member_with_return_exceptions_is_a_job_cancelled(queue: Queue) -> None:
    seen: list[object] = []

    @queue.task
    async def member(n: int) -> int:
        return n

    @queue.task
    async def gather(results: list[object]) -> None:
        seen.extend(results)

    g = await queue.group([member.call(0), member.options(delay=3600).call(1)], then=gather.call(),
                          return_exceptions=True)  # fmt: skip
    assert await g.jobs[1].cancel()
    async with run_pool(queue, concurrency=2):
        await g.result(timeout=10)
    assert seen[0] == 0 and isinstance(seen[1], JobCancelled)
    assert await queue.redis.ttl(queue.keys.prefix + f"gres:{g.then.id}") > 0  # kept as long as the callback


async def test_groups_on_a_sharded_queue_live_in_one_shard(redis_url: str, request: pytest.FixtureRequest) -> None:
    q = Queue(f"groups-shards-{request.node.name[:20]}", url=redis_url, shards=3)

    @q.task
    async def double(n: int) -> int:
        return 2 * n

    @q.task
    async def add(results: list[int]) -> int:
        return sum(results)

    try:
        groups = [await q.group([double.call(n) for n in range(4)], then=add.call()) for _ in range(6)]
        for g in groups:
            assert len({q._shard_of(j.id).keys.prefix for j in [*g.jobs, g.then]}) == 1
        assert len({q._shard_of(g.then.id).keys.prefix for g in groups}) >= 2  # groups spread over shards
        async with run_pool(q, concurrency=8):
            assert [await g.result(timeout=10) for g in groups] == [12] * 6
    finally:
        for s in JobStatus:
            if s not in (JobStatus.ACTIVE,):
                await q.purge(s)
        await q.close()


async def test_bad_groups_raise_before_anything_is_written(queue: Queue, redis_url: str) -> None:
    @queue.task
    async def member() -> int:
        return 1

    other = Queue(queue.name + "-other", url=redis_url)

    @other.task
    async def foreign() -> int:
        return 1

    try:
        with pytest.raises(ValueError, match="at least one"):
            await queue.group([], then=member.call())
        with pytest.raises(ValueError, match="a group lives in one queue"):
            await queue.group([foreign.call()], then=member.call())
        with pytest.raises(ValueError, match="no after="):
            await queue.group([member.call()], then=member.options(after=["x"]).call())
        with pytest.raises(TypeError, match=r"task\.call"):
            await queue.group([member], then=member.call())  # type: ignore[list-item]
    finally:
        await other.close()
    assert await queue.counts() == {s: 0 for s in JobStatus}


async def test_a_worker_killed_mid_group_loses_nothing_and_the_callback_runs_once(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    """Three members, one of which holds the victim worker for 30 s: SIGKILL it. Once it is
    reaped the member runs again on the other worker, and the callback runs once, with every
    member's result, in call order."""
    log = queue.keys.prefix + "test:group"
    keyed = _named(queue, "fault.keyed")
    collect = _named(queue, "fault.collect")
    with workers(queue, redis_url, tmp_path) as ws:
        victim = ws.start("--concurrency", "3")
        g = await queue.group([keyed.call(log, n, 30.0 if n == 1 else 0.0) for n in range(3)],
                              then=collect.call(log))  # fmt: skip
        await wait_for(lambda: _ended(queue, log, 2), 10, "two members to end on the victim")
        assert await g.then.status() is JobStatus.SCHEDULED
        victim.signal(signal.SIGKILL)
        victim.process.wait(5)
        ws.start()
        assert await g.result(timeout=20) == 0 + 1 + 2
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    entries = [x.decode() for x in raw]
    assert [e for e in entries if e.startswith("collect:")] == ["collect:[0, 1, 2]"]
    assert entries.count("start:1") == 2 and entries.count("end:1") == 1


async def test_a_worker_killed_while_the_callback_runs_runs_it_again_with_the_same_results(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL the worker in the middle of the callback (a task with retries): the members'
    results stay with the callback until it ends, so its second run (at least once, as any
    job) gets them all again, and it ends once."""
    log = queue.keys.prefix + "test:callback"
    keyed = _named(queue, "fault.keyed")
    collect = _named(queue, "fault.collect")
    with workers(queue, redis_url, tmp_path) as ws:
        victim = ws.start("--concurrency", "3")
        g = await queue.group([keyed.call(log, n, 0.0) for n in range(3)], then=collect.call(log, 30.0))
        await wait_for(lambda: _has(queue, log, "collect:[0, 1, 2]"), 10, "the callback to start on the victim")
        victim.signal(signal.SIGKILL)
        victim.process.wait(5)
        ws.start()
        assert await g.result(timeout=20) == 0 + 1 + 2
        info = await g.then.info()
        assert info.status is JobStatus.SUCCEEDED and info.attempts == 2
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    entries = [x.decode() for x in raw]
    assert [e for e in entries if e.startswith("collect:")] == ["collect:[0, 1, 2]"] * 2
    assert entries.count("collected") == 1 and [entries.count(f"end:{n}") for n in range(3)] == [1, 1, 1]


def _named(queue: Queue, name: str):  # type: ignore[no-untyped-def]
    """A stand-in for a task of the worker's app (tests.apps.faultapp), declared by name here
    so that ``.call`` can build calls of it; its body never runs in this process."""
    return queue.task(name=name)(lambda *a: None)


async def _has(queue: Queue, log: str, entry: str) -> bool:
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    return entry.encode() in raw


async def _ended(queue: Queue, log: str, n: int) -> bool:
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    return sum(x.startswith(b"end:") for x in raw) == n


async def test_the_docs_example_charges_after_its_parents_and_reports_the_group(redis_url: str) -> None:
    from docs.examples import workflows

    charged, report = await workflows.main(redis_url)
    assert charged == "order 7 charged"
    assert report == "nightly: 6600 bytes in 3 files"
