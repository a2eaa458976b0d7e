"""What ``result()`` gives back: the value as the task's return annotation says, an outcome
that was not kept (``keep_result=0``), a corrupt stored value, a value over the size limit."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _util import must, run_pool, wait_for, wait_status

from aiotaskq import CorruptResult, Job, JobCancelled, JobFailed, JobNotFound, JobStatus, Queue
from aiotaskq.testing import job_fields


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    name: str
    corners: tuple[Point, Point]


class Colour(enum.Enum):
    RED = "red"


WHEN = datetime(2031, 5, 4, 3, 2, 1, 123000, tzinfo=UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

# (return annotation's task name, the value returned, its type after result())
TYPED: list[tuple[str, Any, type]] = [
    ("struct", Point(1, 2), Point),
    ("dataclass", Box("b", (Point(0, 0), Point(3, 4))), Box),
    ("decimal", Decimal("1.10"), Decimal),
    ("uuid", ID, uuid.UUID),
    ("tuple", (1, "a"), tuple),
    ("set", {1, 2, 3}, set),
    ("frozenset", frozenset({"a"}), frozenset),
    ("datetime", WHEN, datetime),
    ("enum", Colour.RED, Colour),
    ("list_of_structs", [Point(1, 1), Point(2, 2)], list),
]


async def struct() -> Point:
    return Point(1, 2)


async def dataclass() -> Box:
    return Box("b", (Point(0, 0), Point(3, 4)))


def decimal() -> Decimal:  # a plain function: the same conversion
    return Decimal("1.10")


async def uuid_() -> uuid.UUID:
    return ID


async def tuple_() -> tuple[int, str]:
    return (1, "a")


async def set_() -> set[int]:
    return {1, 2, 3}


async def frozenset_() -> frozenset[str]:
    return frozenset({"a"})


async def datetime_() -> datetime:
    return WHEN


async def enum_() -> Colour:
    return Colour.RED


async def list_of_structs() -> list[Point]:
    return [Point(1, 1), Point(2, 2)]


def register_typed(queue: Queue) -> None:
    for fn in (struct, dataclass, decimal, uuid_, tuple_, set_, frozenset_, datetime_, enum_, list_of_structs):
        queue.task(name=fn.__name__.rstrip("_"))(fn)


async def test_results_come_back_as_the_return_annotation_says(queue: Queue) -> None:
    register_typed(queue)
    async with run_pool(queue):
        for name, value, kind in TYPED:
            job = await queue.tasks[name].enqueue()
            got = await job.result(timeout=5)
            assert type(got) is kind, name
            assert got == value, name
    # Today's untyped decoding gave dicts, lists and strings for all but datetime:
    assert type((await job.info()).result) is list and (await job.info()).result[0] == {"x": 1, "y": 1}


async def test_a_handle_by_id_or_by_name_converts_too(queue: Queue, redis_url: str) -> None:
    register_typed(queue)
    async with run_pool(queue):
        job = await queue.tasks["struct"].enqueue()
        await job.result(timeout=5)
        assert await queue.job(job.id).result() == Point(1, 2)  # a Job[Any] made from the id
        by_name = await queue.enqueue("dataclass")
        assert by_name is not None
        assert isinstance(await by_name.result(timeout=5), Box)
        # A producer that does not know the task gets the value as decoded.
        async with Queue(queue.name, url=redis_url) as bare:
            assert await bare.job(job.id).result() == {"x": 1, "y": 2}


async def test_a_value_that_does_not_fit_its_annotation_comes_back_as_it_is(queue: Queue) -> None:
    @queue.task(name="liar")
    async def liar() -> int:
        return "not an int"  # type: ignore[return-value]

    @queue.task(name="unresolvable")
    async def unresolvable() -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        return [1]

    async with run_pool(queue):
        lie: object = await (await liar.enqueue()).result(timeout=5)
        assert lie == "not an int"
        assert await (await unresolvable.enqueue()).result(timeout=5) == [1]


# -- keep_result=0: the outcome reaches the waiters -----------------------------------------------


def waiters(queue: Queue, job_id: str) -> int:
    """How many result() calls are subscribed to the job's done channel."""
    return len(queue._listener_for_waiters()._subs.get(queue.keys.done(job_id).encode(), []))


async def test_a_waiter_gets_the_value_of_a_job_that_is_not_kept(queue: Queue) -> None:
    go = anyio.Event()

    @queue.task(name="unkept", keep_result=0)
    async def unkept() -> Point:
        await go.wait()
        return Point(7, 8)

    async with run_pool(queue):
        job = await unkept.enqueue()
        await wait_status(queue, job.id, JobStatus.ACTIVE)
        got: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                got.append(await job.result(timeout=5))

            tg.start_soon(wait)
            tg.start_soon(wait)
            await wait_for(lambda: waiters(queue, job.id) == 2, what="the waiters to subscribe")
            go.set()
        assert got == [Point(7, 8), Point(7, 8)]
        with pytest.raises(JobNotFound):  # it was not kept: a later call finds nothing
            await job.result(timeout=5)


async def test_an_unkept_job_ending_as_its_waiter_reads_gives_its_value(queue: Queue) -> None:
    """The job may end (and be deleted) between the subscription and the first read: its
    message is then still on its way, and the waiter must get it, not JobNotFound. Each job
    is let go the moment its waiter's subscription is confirmed, so its end races the
    waiter's first read (a job that ended before result() was called is gone by design)."""
    gates: dict[int, anyio.Event] = {}

    @queue.task(name="fast", keep_result=0)
    async def fast(i: int) -> int:
        await gates[i].wait()
        return i * 2

    listener = queue._listener_for_waiters()

    def subscribed(job_id: str) -> bool:
        ch = queue.keys.done(job_id).encode()
        return ch in listener._subs and ch not in listener._confirmed

    async with run_pool(queue, idle=True):
        for i in range(30):
            gates[i] = anyio.Event()
            job = await fast.enqueue(i)
            got: list[int] = []
            async with anyio.create_task_group() as tg:

                async def wait(job: Job[int] = job, got: list[int] = got) -> None:
                    got.append(await job.result(timeout=5))

                tg.start_soon(wait)
                with anyio.fail_after(5):  # let it go as soon as possible: spin, not a 10 ms poll
                    while not subscribed(job.id):
                        await anyio.lowlevel.checkpoint()
                gates[i].set()
            assert got == [i * 2]


async def test_a_waiter_on_an_unkept_job_that_is_cancelled_gets_job_cancelled(queue: Queue) -> None:
    started = anyio.Event()

    @queue.task(name="unkept.slow", keep_result=0)
    async def slow() -> None:
        started.set()
        await anyio.sleep(30)

    async with run_pool(queue):
        running = await slow.enqueue()
        waiting = must(await slow.options(delay=60).enqueue())
        await started.wait()
        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:

            async def wait(job: Any) -> None:
                try:
                    await job.result(timeout=5)
                except Exception as exc:
                    errors.append(exc)

            tg.start_soon(wait, running)
            tg.start_soon(wait, waiting)
            await wait_for(lambda: waiters(queue, running.id) + waiters(queue, waiting.id) == 2, what="subscriptions")
            assert await running.cancel() and await waiting.cancel()
        assert [type(e) for e in errors] == [JobCancelled, JobCancelled]
        assert not await queue.redis.exists(queue.keys.job(running.id), queue.keys.job(waiting.id))


# -- corrupt and oversized results ----------------------------------------------------------------


async def _set_stored_result(queue: Queue, job_id: str, result: bytes) -> None:
    """Replace the result in an ended job's record (job:<id>, see _record.py), keeping its expiry."""
    key = queue.keys.job(job_id)
    raw: bytes | None = await queue.redis.get(key)  # type: ignore[assignment]
    assert raw is not None, "the job was not kept"
    parts = raw.split(b"|", 7)  # status, end, duration, 4 lengths, then active entry, result...
    la, lr = int(parts[3] or 0), int(parts[4] or 0)
    body = parts[7]
    body = body[:la] + result + body[la + lr :]
    parts[4] = str(len(result)).encode()
    await queue.redis.set(key, b"|".join([*parts[:7], body]), keepttl=True)


async def test_a_corrupt_stored_result_raises_corrupt_result_and_info_still_works(queue: Queue) -> None:
    @queue.task(name="ok")
    async def ok() -> Point:
        return Point(1, 2)

    async with run_pool(queue):
        job = await ok.enqueue()
        await job.result(timeout=5)
    for raw in (b"\xc1", b"\x92\x01", b"\xa3ab", b"\xd9\x02\xff\xfe", b"\xdd" + b"\xff" * 4):
        await _set_stored_result(queue, job.id, raw)
        with pytest.raises(CorruptResult) as err:
            await job.result(timeout=5)
        assert err.value.job_id == job.id and "cannot be decoded" in str(err.value)
        info = await job.info()
        assert info.status is JobStatus.SUCCEEDED and info.result is None


async def test_a_result_over_max_result_bytes_fails_the_job_without_retry(redis_url: str) -> None:
    async with Queue("t-max-result", url=redis_url, max_result_bytes=1000) as queue:

        @queue.task(name="big", retries=3)
        async def big(n: int) -> bytes:
            return b"x" * n

        async with run_pool(queue):
            assert len(await (await big.enqueue(900)).result(timeout=5)) == 900
            job = await big.enqueue(2000)
            with pytest.raises(
                JobFailed, match=r"^job \S+ failed: BadResult: .*2003 bytes, over max_result_bytes=1000"
            ):
                await job.result(timeout=5)
            info = await job.info()
            assert info.attempts == 1 and info.status is JobStatus.FAILED
            (stored,) = await job_fields(queue, [job.id])
            assert stored is not None and stored["status"] == b"failed" and "result" not in stored


async def test_the_default_result_limit_is_one_mebibyte(queue: Queue) -> None:
    assert queue.max_result_bytes == 1 << 20

    @queue.task(name="huge")
    async def huge() -> bytes:
        return b"x" * (1 << 20)

    async with run_pool(queue):
        with pytest.raises(JobFailed, match="over max_result_bytes=1048576"):
            await (await huge.enqueue()).result(timeout=5)
