"""Job is generic in the task's result type: ``make lint`` runs mypy --strict over this
file, so each ``assert_type`` fails the lint when the generics break; the test runs the
same calls, so the runtime values agree with what mypy was told."""

from __future__ import annotations

from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, assert_type

import msgspec
from _util import run_pool

from aiotaskq import BoundTask, Call, Group, Job, Queue, Task


class Point(msgspec.Struct):
    x: int
    y: int


async def test_enqueue_gives_a_job_of_the_tasks_result_type(queue: Queue) -> None:
    @queue.task
    async def add(x: int, y: int) -> int:
        return x + y

    @queue.task(name="point")
    async def point(x: int) -> Point:
        return Point(x, -x)

    @queue.task(name="price")
    def price(cents: int) -> Decimal:  # a plain function: no coroutine to unwrap
        return Decimal(cents) / 100

    @queue.task(name="nothing")
    async def nothing() -> None: ...

    calling: Task[..., Coroutine[Any, Any, int]] = add  # R is what calling the function returns
    assert calling is add
    async with run_pool(queue):
        job = await add.enqueue(1, 2)
        assert_type(job, Job[int])
        total = await job.result(timeout=5)
        assert_type(total, int)
        assert total == 3

        p = await (await point.enqueue(4)).result(timeout=5)
        assert_type(p, Point)
        assert p == Point(4, -4)

        d = await (await price.enqueue(250)).result(timeout=5)
        assert_type(d, Decimal)
        assert d == Decimal("2.5")

        bound = point.options(priority=5)
        assert isinstance(bound, BoundTask)
        maybe = await bound.enqueue(1)
        assert_type(maybe, Job[Point] | None)
        assert maybe is not None
        assert_type(await maybe.result(timeout=5), Point)

        many = await add.enqueue_many([(1, 1), (2, 2)])
        assert_type(many, list[Job[int] | None])
        assert [await j.result(timeout=5) for j in many if j is not None] == [2, 4]
        assert_type(await point.options(delay=0).enqueue_many([(1,)]), list[Job[Point] | None])

        await (await nothing.enqueue()).result(timeout=5)

        # Handles made from an id or a name are Job[Any], and still convert at run time.
        by_id = queue.job(job.id)
        assert_type(by_id, Job[Any])
        by_name = await queue.enqueue("point", args=(9,))
        assert_type(by_name, Job[Any] | None)
        assert by_name is not None and await by_name.result(timeout=5) == Point(9, -9)
        assert repr(by_id) == f"<Job {job.id!r} on queue {queue.name!r}>"


def test_a_bare_job_annotation_means_job_of_any(queue: Queue) -> None:
    """Code written before Job was generic (``def f(job: Job)``) type-checks unchanged."""

    def keep(job: Job) -> Job:
        return job

    j = keep(queue.job("x"))
    assert_type(j, Job[Any])
    assert j == queue.job("x") and Job[int] is not Job


async def test_calls_and_groups_carry_the_result_types(queue: Queue) -> None:
    @queue.task
    async def square(n: int) -> int:
        return n * n

    @queue.task
    def label(results: list[int], prefix: str) -> str:  # a callback: its first argument is the results
        return f"{prefix}{sum(results)}"

    member = square.call(3)
    assert_type(member, Call[int])
    then = label.call("total=")  # the callback's call leaves out the results
    assert_type(then, Call[str])
    assert_type(square.options(priority=1).call(2), Call[int])
    g = await queue.group([member, square.call(4)], then=then)
    assert_type(g, Group[str])
    async with run_pool(queue):
        result = await g.result(timeout=5)
    assert_type(result, str)
    assert result == "total=25"
