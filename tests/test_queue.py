"""The producer side: enqueue validation, dedup, inspection, maintenance, bad input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest
from _util import must, queue_keys, queued_ids, run_pool, wait_status

from aiotaskq import Job, JobFailed, JobNotFound, JobStatus, Queue
from aiotaskq._record import encode_record, record
from aiotaskq.testing import job_fields


class Point(msgspec.Struct):
    x: int
    y: int


@dataclass
class Box:
    label: str
    size: float


# -- deduplication -----------------------------------------------------------------------------


async def _snapshot(queue: Queue, job_id: str) -> tuple[Any, ...]:
    r, k = queue.redis, queue.keys
    assert await r.hexists(k.jobs, job_id)  # the job is waiting or active: it has a record
    return (
        await r.hget(k.jobs, job_id),  # the record: every byte of it
        await r.hget(k.active, job_id),
        await r.get(k.job(job_id)),
        await r.zrange(k.scheduled, 0, -1, withscores=True),
        await queued_ids(queue),
        await r.hget(k.stats, "enqueued"),
    )


async def test_dedup_while_scheduled_or_queued(queue: Queue) -> None:
    @queue.task
    async def work(n: int) -> int:
        return n

    first = await work.options(job_id="same", delay=60).enqueue(1)
    assert first is not None and first.id == "same"
    before = await _snapshot(queue, "same")
    assert await work.options(job_id="same").enqueue(2) is None
    assert await queue.enqueue(work.name, args=(3,), job_id="same", priority=9) is None
    assert await _snapshot(queue, "same") == before  # nothing written

    assert await first.status() is JobStatus.SCHEDULED

    other = await work.options(job_id="other").enqueue(1)
    assert other is not None and await other.status() is JobStatus.QUEUED
    before = await _snapshot(queue, "other")
    assert await work.options(job_id="other", delay=5).enqueue(2) is None
    assert await _snapshot(queue, "other") == before


async def test_dedup_while_active_then_allowed_after_the_end(queue: Queue) -> None:
    release = anyio.Event()

    @queue.task
    async def work(n: int) -> int:
        if n == 1:
            await release.wait()
        return n * 10

    async with run_pool(queue):
        job = await work.options(job_id="once").enqueue(1)
        assert job is not None
        await wait_status(queue, "once", JobStatus.ACTIVE)
        before = await _snapshot(queue, "once")
        assert await work.options(job_id="once").enqueue(2) is None
        assert await _snapshot(queue, "once") == before
        release.set()
        assert await job.result(timeout=3) == 10
        again = await work.options(job_id="once").enqueue(2)
        assert again is not None
        assert await again.result(timeout=3) == 20
    info = await queue.job("once").info()
    assert info.args == (2,) and info.attempts == 1 and info.result == 20
    assert await queue.job_ids(JobStatus.SUCCEEDED) == ["once"]  # listed once, not twice


async def test_enqueue_many_returns_a_job_per_call(queue: Queue) -> None:
    @queue.task
    async def add(x: int, y: int) -> int:
        return x + y

    jobs = await add.enqueue_many([(1, 2), {"x": 3, "y": 4}])
    assert all(isinstance(j, Job) for j in jobs)
    assert (await queue.counts())[JobStatus.QUEUED] == 2
    async with run_pool(queue):
        assert [await j.result(timeout=3) for j in jobs if j is not None] == [3, 7]


# -- inspection and maintenance ----------------------------------------------------------------


async def test_counts_has_every_status(queue: Queue) -> None:
    counts = await queue.counts()
    assert set(counts) == set(JobStatus)
    assert all(v == 0 for v in counts.values())

    release = anyio.Event()

    @queue.task
    async def ok() -> None:
        pass

    @queue.task
    async def bad() -> None:
        raise RuntimeError("bad")

    @queue.task
    async def block() -> None:
        await release.wait()

    async with run_pool(queue, concurrency=1):
        done = [await ok.enqueue(), await bad.enqueue()]
        blocked = await block.enqueue()
        await wait_status(queue, blocked.id, JobStatus.ACTIVE)
        for job in done:
            await wait_status(queue, job.id, JobStatus.SUCCEEDED if job is done[0] else JobStatus.FAILED)
        await ok.enqueue()
        await ok.enqueue()
        await ok.options(delay=60).enqueue()
        await (must(await ok.options(delay=60).enqueue())).cancel()
        assert await queue.counts() == {
            JobStatus.SCHEDULED: 1,
            JobStatus.QUEUED: 2,
            JobStatus.ACTIVE: 1,
            JobStatus.SUCCEEDED: 1,
            JobStatus.FAILED: 1,
            JobStatus.CANCELLED: 1,
        }
        assert await queue.job_ids(JobStatus.ACTIVE) == [blocked.id]
        release.set()


async def test_job_ids_order_and_limit(queue: Queue) -> None:
    @queue.task
    async def bad(n: int) -> None:
        await anyio.sleep(0.005)  # distinct end times
        raise RuntimeError(str(n))

    jobs = []
    async with run_pool(queue):
        for n in range(5):  # one after the other: each ends >= 5 ms after the one before
            jobs.append(await bad.enqueue(n))
            await wait_status(queue, jobs[-1].id, JobStatus.FAILED)
    ids = [j.id for j in jobs]
    assert await queue.job_ids(JobStatus.FAILED) == ids[::-1]  # newest first
    assert await queue.job_ids("failed", limit=2) == ids[:-3:-1]
    assert await queue.job_ids(JobStatus.SUCCEEDED) == []

    later = must(await bad.options(delay=60).enqueue(9))
    sooner = must(await bad.options(delay=30).enqueue(8))
    assert await queue.job_ids(JobStatus.SCHEDULED) == [sooner.id, later.id]  # by due time
    low = must(await bad.options(priority=-1).enqueue(7))
    high = must(await bad.options(priority=1).enqueue(6))
    assert await queue.job_ids(JobStatus.QUEUED) == [high.id, low.id]  # in run order
    with pytest.raises(ValueError, match=r"^limit:"):
        await queue.job_ids(JobStatus.FAILED, limit=0)
    with pytest.raises(ValueError, match=r"^offset:"):
        await queue.job_ids(JobStatus.FAILED, offset=-1)
    assert await queue.job_ids("failed", limit=2, offset=1) == ids[-2:-4:-1]


async def test_job_ids_pages_walk_every_queued_band_in_run_order(queue: Queue) -> None:
    """Pages of queued ids: bands before the page are skipped by their length, and a page may
    start inside one band and end inside another."""
    order = []
    for prio in (0, 5, -3):
        for i in range(7):
            order.append((prio, must(await queue.enqueue("t.page", priority=prio, job_id=f"p{prio}-{i}")).id))
    run_order = [job_id for _, job_id in sorted(order, key=lambda x: -x[0])]  # stable: FIFO within a band
    pages = [await queue.job_ids(JobStatus.QUEUED, limit=4, offset=o) for o in range(0, 24, 4)]
    assert [x for page in pages for x in page] == run_order
    assert pages[-1] == run_order[20:]  # the last, short page
    assert await queue.job_ids(JobStatus.QUEUED, limit=5, offset=30) == []
    for offset in (0, 6, 7, 13, 20):
        assert await queue.job_ids(JobStatus.QUEUED, limit=3, offset=offset) == run_order[offset : offset + 3]


async def _failed_jobs(queue: Queue, n: int, outcome: dict[int, bool]) -> list[Job]:
    @queue.task(retries=1, backoff=(0.0, 0.0))
    async def sometimes(i: int) -> int:
        if not outcome.get(i):
            raise RuntimeError(f"not yet {i}")
        return i

    jobs = [await sometimes.enqueue(i) for i in range(n)]
    async with run_pool(queue):
        for job in jobs:
            with pytest.raises(JobFailed):
                await job.result(timeout=3)
    assert (await queue.counts())[JobStatus.FAILED] == n
    assert [(await j.info()).attempts for j in jobs] == [2] * n
    return jobs


async def test_requeue_failed_by_ids_and_all(queue: Queue) -> None:
    outcome: dict[int, bool] = {}
    jobs = await _failed_jobs(queue, 3, outcome)
    outcome.update({0: True, 1: True, 2: True})

    assert await queue.requeue_failed([jobs[0].id, "unknown-id"]) == 1
    info = await jobs[0].info()
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0 and info.error is None and info.finished_at is None
    assert set(await queue.job_ids(JobStatus.FAILED)) == {jobs[1].id, jobs[2].id}
    assert await queue.requeue_failed([jobs[0].id]) == 0  # no longer failed

    assert await queue.requeue_failed() == 2
    counts = await queue.counts()
    assert counts[JobStatus.FAILED] == 0 and counts[JobStatus.QUEUED] == 3
    async with run_pool(queue):
        assert [await j.result(timeout=3) for j in jobs] == [0, 1, 2]
    assert [(await j.info()).attempts for j in jobs] == [1, 1, 1]
    assert await queue.requeue_failed() == 0


async def test_purge_deletes_jobs_and_their_data(queue: Queue) -> None:
    jobs = await _failed_jobs(queue, 3, {})

    @queue.task
    async def later() -> None:
        pass

    kept = must(await later.options(delay=60).enqueue())
    assert await queue.purge(JobStatus.FAILED) == 3
    for job in jobs:
        assert not await queue.redis.exists(queue.keys.job(job.id))
        assert await job_fields(queue, [job.id]) == [None]
        with pytest.raises(JobNotFound):
            await job.status()
    assert await queue.job_ids(JobStatus.FAILED) == []
    assert (await queue.counts())[JobStatus.FAILED] == 0
    assert await kept.status() is JobStatus.SCHEDULED
    assert await queue.purge(JobStatus.FAILED) == 0
    assert await queue.purge("scheduled") == 1
    assert await queue.redis.hget(queue.keys.jobs, kept.id) is None
    assert await job_fields(queue, [kept.id]) == [None]
    with pytest.raises(ValueError, match=r"^status:"):
        await queue.purge(JobStatus.ACTIVE)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((object(),), id="object"),
        pytest.param((2**70,), id="huge-int"),
        pytest.param((lambda: 1,), id="fn"),
    ],
)
async def test_unencodable_arguments_raise_type_error_and_write_nothing(queue: Queue, args: tuple[Any, ...]) -> None:
    @queue.task
    async def take(value: Any) -> None:
        pass

    with pytest.raises(TypeError):
        await take.enqueue(*args)
    with pytest.raises(TypeError):
        await take.options(job_id="fixed", delay=5).enqueue(*args)
    with pytest.raises(TypeError):
        await queue.enqueue(take.name, args=args)
    with pytest.raises(TypeError):
        await take.enqueue_many([(1,), args])
    assert await queue_keys(queue) == []  # nothing at all was written
    assert all(v == 0 for v in (await queue.counts()).values())


async def _set_payload(queue: Queue, job_id: str, payload: bytes) -> None:
    """Overwrite the stored payload of a waiting job, as a hand edit would."""
    raw: bytes | None = await queue.redis.hget(queue.keys.jobs, job_id)  # type: ignore[assignment]
    assert raw is not None, job_id
    fields = record(raw)
    fields[b"payload"] = payload
    await queue.redis.hset(queue.keys.jobs, job_id, encode_record(fields))


async def test_bad_jobs_fail_with_a_clear_error_and_the_pool_goes_on(queue: Queue) -> None:
    # Retries are allowed, yet a bad job fails on its first attempt: no retry can help it.
    @queue.task(retries=3, backoff=(0.0, 0.0))
    async def add(x: int, y: int) -> int:
        return x + y

    @queue.task(retries=3, backoff=(0.0, 0.0))
    async def unencodable_result() -> Any:
        return object()

    jobs: dict[str, Job | None] = {
        "unknown": await queue.enqueue("nope", args=(1,)),
        "garbage": await add.enqueue(1, 2),
        "not-args": await add.enqueue(1, 2),
        "arity": await queue.enqueue(add.name, args=(1, 2, 3)),
        "missing": await queue.enqueue(add.name, args=(1,)),
        "unknown-kw": await queue.enqueue(add.name, args=(1, 2), kwargs={"z": 3}),
        "type": await queue.enqueue(add.name, args=("one", 2)),
        "result": await unencodable_result.enqueue(),
        "good": await add.enqueue(20, 22),
    }
    by_name = {name: job for name, job in jobs.items() if job is not None}
    assert len(by_name) == len(jobs)
    await _set_payload(queue, by_name["garbage"].id, b"\xc1\xff\x00")
    await _set_payload(queue, by_name["not-args"].id, msgspec.msgpack.encode(42))

    expected = {
        "unknown": ["UnknownTask", "'nope'"],
        "garbage": ["BadPayload"],
        "not-args": ["BadPayload"],
        "arity": ["BadArguments", "too many positional arguments"],
        "missing": ["BadArguments", "'y'"],
        "unknown-kw": ["BadArguments", "'z'"],
        "type": ["BadArguments", "'x'", "Expected `int`, got `str`"],
        "result": ["BadResult", "cannot be encoded"],
    }
    async with run_pool(queue, concurrency=2):
        assert await by_name["good"].result(timeout=5) == 42
        for name, words in expected.items():
            with pytest.raises(JobFailed) as caught:
                await by_name[name].result(timeout=5)
            for word in words:
                assert word in caught.value.error, (name, caught.value.error)
            assert (await by_name[name].info()).attempts == 1
        # The pool is still serving after all of them.
        assert await (await add.enqueue(1, 1)).result(timeout=3) == 2


async def test_struct_and_dataclass_arguments_round_trip(queue: Queue) -> None:
    @queue.task
    async def describe(p: Point, box: Box, points: list[Point], *more: Point, **boxes: Box) -> list[Any]:
        assert isinstance(p, Point) and isinstance(box, Box)
        assert all(isinstance(q, Point) for q in (*points, *more))
        assert all(isinstance(b, Box) for b in boxes.values())
        return [p.x + p.y, box.label, box.size, len(points) + len(more), sorted(boxes)]

    async with run_pool(queue):
        job = await describe.enqueue(Point(1, 2), Box("crate", 1.5), [Point(3, 4)], Point(5, 6), extra=Box("bag", 0.5))
        assert await job.result(timeout=5) == [3, "crate", 1.5, 2, ["extra"]]
    info = await job.info()
    assert info.args[0] == {"x": 1, "y": 2}  # stored as msgpack, never pickled


# -- validation --------------------------------------------------------------------------------

_AWARE = datetime.now(UTC) + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        pytest.param({"delay": -1}, "delay", id="negative-delay"),
        pytest.param({"delay": timedelta(seconds=-1)}, "delay", id="negative-timedelta"),
        pytest.param({"at": datetime.now()}, "at", id="naive-at"),
        pytest.param({"priority": 1001}, "priority", id="priority-high"),
        pytest.param({"priority": -1001}, "priority", id="priority-low"),
        pytest.param({"retries": -1}, "retries", id="negative-retries"),
        pytest.param({"timeout": 0}, "timeout", id="zero-timeout"),
        pytest.param({"timeout": -2.5}, "timeout", id="negative-timeout"),
        pytest.param({"delay": 1, "at": _AWARE}, "delay, at", id="delay-and-at"),
        pytest.param({"job_id": ""}, "job_id", id="empty-job-id"),
    ],
)
async def test_bad_options_raise_value_error_naming_the_parameter(
    queue: Queue, options: dict[str, Any], param: str
) -> None:
    @queue.task
    async def work() -> None:
        pass

    with pytest.raises(ValueError, match=rf"^{param}:"):
        await work.options(**options).enqueue()
    with pytest.raises(ValueError, match=rf"^{param}:"):
        await queue.enqueue(work.name, **options)
    assert await queue_keys(queue) == []


@pytest.mark.parametrize(
    ("make", "param"),
    [
        pytest.param(lambda url: Queue("", url=url), "name", id="empty-queue-name"),
        pytest.param(lambda url: Queue("a{b}", url=url), "name", id="braces-in-queue-name"),
    ],
)
def test_bad_queue_name(redis_url: str, make: Callable[[str], Queue], param: str) -> None:
    with pytest.raises(ValueError, match=rf"^{param}:"):
        make(redis_url)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        pytest.param({"retries": -1}, "retries", id="retries"),
        pytest.param({"timeout": 0}, "timeout", id="timeout"),
        pytest.param({"priority": 5000}, "priority", id="priority"),
    ],
)
def test_bad_task_options(queue: Queue, options: dict[str, Any], param: str) -> None:
    def fn() -> None:
        pass

    with pytest.raises(ValueError, match=rf"^{param}:"):
        queue.task(**options)(fn)


def test_task_name_registered_twice(queue: Queue) -> None:
    def fn() -> None:
        pass

    queue.task(name="dup")(fn)
    with pytest.raises(ValueError, match=r"^name:"):
        queue.task(name="dup")(fn)
