"""Bad input: corrupted job hashes, random argument shapes against typed signatures, arguments over
``max_payload_bytes``, task names and job ids that look like key syntax, tasks that raise
BaseException subclasses or block the event loop. In every case the bad job ends with a clear error
(or the call fails at once), nothing else is lost and the pool goes on.

The property-based tests (hypothesis) are sync functions that run one ``anyio.run`` per example,
each with a queue of its own and a pool of its own; examples are few and small so the file stays fast.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _util import FAST, must, queue_keys, run_pool, wait_for, wait_status
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from aiotaskq import Job, JobCancelled, JobFailed, JobStatus, PayloadTooLarge, Pool, Queue
from aiotaskq._monitor import watch_event_loop
from aiotaskq._record import encode_record, record
from aiotaskq.job import encode_payload
from aiotaskq.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]

# Each example runs a pool of its own (a few ms on a local Redis). No example database: nothing is written
# to the repo.
SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
FEW = settings(max_examples=50, deadline=None, database=None, suppress_health_check=SLOW_OK)

_names = itertools.count()


def queue_name(kind: str) -> str:
    return f"bad-{os.getpid()}-{kind}-{next(_names)}"


async def outcome(job: Job, timeout: float = 10.0) -> tuple[JobStatus, Any]:
    """(SUCCEEDED, result) or (FAILED, error text) once the job has ended."""
    try:
        return JobStatus.SUCCEEDED, await job.result(timeout=timeout)
    except JobFailed as exc:
        return JobStatus.FAILED, exc.error


async def pool_ids(queue: Queue) -> list[str]:
    raw: list[bytes] = await queue.redis.zrange(queue.keys.pools, 0, -1)  # type: ignore[assignment]
    return [x.decode() for x in raw]


async def assert_all_ended(queue: Queue, total: int) -> None:
    """No job is lost: every one of ``total`` jobs is succeeded or failed, none left behind."""
    counts = await queue.counts()
    assert counts[JobStatus.SUCCEEDED] + counts[JobStatus.FAILED] == total, counts
    assert counts[JobStatus.QUEUED] == counts[JobStatus.ACTIVE] == counts[JobStatus.SCHEDULED] == 0, counts


# -- 1. corrupted job hashes --------------------------------------------------------------------------

_valid_payload = st.integers(-1000, 1000).map(lambda x: encode_payload((x,), {}))
_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_corrupt_payload = st.one_of(
    st.binary(max_size=48),  # random bytes
    st.tuples(_valid_payload, st.integers(1, 8)).map(lambda t: t[0][: -t[1]]),  # cut short
    st.tuples(_valid_payload, st.integers(0, 63), st.integers(1, 255)).map(
        lambda t: _flip(t[0], t[1] % len(t[0]), t[2])
    ),  # one byte changed
    _msgpack_values.map(msgspec.msgpack.encode),  # well-formed msgpack of any shape
    st.tuples(st.lists(_msgpack_values, max_size=3), st.dictionaries(st.sampled_from("xyz"), _msgpack_values)).map(
        msgspec.msgpack.encode
    ),  # [args, kwargs] of any shape
)


def _flip(data: bytes, i: int, mask: int) -> bytes:
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)


def _decodes(payload: bytes) -> tuple[list[Any], dict[str, Any]] | None:
    """The oracle: the payload format is msgpack ``[args, kwargs]`` (strings valid UTF-8)."""
    try:
        return msgspec.msgpack.decode(payload, type=tuple[list[Any], dict[str, Any]])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None


@FEW
@given(
    payloads=st.lists(_corrupt_payload, min_size=1, max_size=6),
    task_names=st.lists(st.binary(max_size=16), max_size=2),
)
@example(
    payloads=[
        b"",
        b"\xc1",  # never used in msgpack
        b"\x92\x90",  # [[]]: kwargs missing
        b"\x92\x90\x80",  # [[], {}]: x missing
        b"\x92\x91\xa1x\x80",  # [["x"], {}]: x is not an int
        b"\x92\x91\xa1\x80\x80",  # a string that is not UTF-8
        b"\x91" * 5000 + b"\xc0",  # nested deeper than the decoder recurses
        b"\x92\x91\xd6\xff\x00\x00\x00\x00\x80",  # [[timestamp ext], {}]
    ],
    task_names=[b"", b"\xff\xfe"],
)
def test_corrupted_job_hashes_fail_their_jobs_only(
    redis_server: RedisServer, payloads: list[bytes], task_names: list[bytes]
) -> None:
    anyio.run(_corrupted_job_hashes, redis_server.url, payloads, task_names)


async def _edit_record(q: Queue, job_id: str, name: bytes, value: bytes) -> None:
    """Overwrite one field of a queued job's record (jobs hash), as a hand edit would."""
    raw: bytes | None = await q.redis.hget(q.keys.jobs, job_id)  # type: ignore[assignment]
    assert raw is not None, job_id
    fields = record(raw)
    fields[name] = value
    await q.redis.hset(q.keys.jobs, job_id, encode_record(fields))
    assert record(await q.redis.hget(q.keys.jobs, job_id))[name] == value  # type: ignore[arg-type]


async def _corrupted_job_hashes(url: str, payloads: list[bytes], task_names: list[bytes]) -> None:
    async with Queue(queue_name("corrupt"), url=url) as q:

        @q.task(name="echo", retries=2, backoff=(0.0, 0.0))  # retries allowed: no retry can help a bad job
        async def echo(x: int) -> int:
            return x

        good = [await echo.enqueue(i) for i in range(2)]
        bad_payload = [await echo.enqueue(0) for _ in payloads]
        bad_task = [await echo.enqueue(0) for _ in task_names]
        good += [await echo.enqueue(i) for i in range(2, 4)]
        for job, payload in zip(bad_payload, payloads, strict=True):
            await _edit_record(q, job.id, b"payload", payload)
        for job, name in zip(bad_task, task_names, strict=True):
            await _edit_record(q, job.id, b"task", name)

        async with run_pool(q, concurrency=4):
            for job, payload in zip(bad_payload, payloads, strict=True):
                status, value = await outcome(job)
                decoded = _decodes(payload)
                event(f"corrupted payload: {status.value} {value.split(':')[0] if isinstance(value, str) else ''}")
                if decoded is None:
                    assert status is JobStatus.FAILED and value.startswith("BadPayload: "), (payload, value)
                elif status is JobStatus.FAILED:
                    assert value.startswith("BadArguments: "), (payload, value)
                else:  # the corruption still reads as arguments that fit echo(x: int)
                    args, kwargs = decoded
                    assert type(value) is int and value == (args[0] if args else kwargs["x"]), (payload, value)
                info = await job.info()  # readable, whatever the payload holds
                assert info.status is status
                if status is JobStatus.FAILED:
                    assert info.attempts == 1  # failed at once, never retried
            for job, name in zip(bad_task, task_names, strict=True):
                status, value = await outcome(job)
                if name == b"echo":
                    assert status is JobStatus.SUCCEEDED
                else:
                    assert status is JobStatus.FAILED and value.startswith("UnknownTask: "), (name, value)
            assert [await j.result(timeout=5) for j in good] == [0, 1, 2, 3]
            assert await (await echo.enqueue(99)).result(timeout=5) == 99  # the pool goes on
        await assert_all_ended(q, len(good) + len(bad_payload) + len(bad_task) + 1)


# -- 2. random argument shapes against typed signatures ----------------------------------------------


class Point(msgspec.Struct):
    x: int
    y: int


def _typed_body(
    a: int,
    b: str,
    c: list[int],
    d: dict[str, float] | None,
    rest: tuple[float, ...],
    e: Point | None,
    more: dict[str, bool],
) -> bool:
    """True when every argument arrived with its annotated type; raises TypeError otherwise."""
    checks = [
        type(a) is int,
        type(b) is str,
        type(c) is list and all(type(i) is int for i in c),
        d is None or (type(d) is dict and all(type(k) is str and type(v) is float for k, v in d.items())),
        type(rest) is tuple and all(type(r) is float for r in rest),
        e is None or type(e) is Point,
        all(type(v) is bool for v in more.values()),
    ]
    if not all(checks):
        raise TypeError(f"ill-typed arguments reached the task: {checks}")
    return True


def _register_typed(q: Queue) -> None:
    @q.task(name="typed-async")
    async def typed_async(
        a: int,
        b: str,
        c: list[int],
        d: dict[str, float] | None = None,
        *rest: float,
        e: Point | None = None,
        **more: bool,
    ) -> bool:
        return _typed_body(a, b, c, d, rest, e, more)

    @q.task(name="typed-sync")
    def typed_sync(
        a: int,
        b: str,
        c: list[int],
        d: dict[str, float] | None = None,
        *rest: float,
        e: Point | None = None,
        **more: bool,
    ) -> bool:
        return _typed_body(a, b, c, d, rest, e, more)


_any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)  # beyond int64/uint64 msgpack cannot encode it: TypeError at enqueue
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
_kw_name = st.sampled_from(["a", "b", "c", "d", "e", "x", "y", "rest", "more"]) | st.text(max_size=3)
_random_call = st.tuples(st.lists(_any_value, max_size=6), st.dictionaries(_kw_name, _any_value, max_size=3))
_i64 = st.integers(-(2**63), 2**63 - 1)
_well_typed_call = st.tuples(
    st.tuples(
        _i64,
        st.text(max_size=6),
        st.lists(_i64, max_size=3),
        st.none() | st.dictionaries(st.text(max_size=3), st.floats() | _i64, max_size=2),  # ints convert to float
    ).map(list),
    st.fixed_dictionaries({}, optional={"e": st.builds(dict, x=_i64, y=_i64), "flag": st.booleans()}),
)


Call = tuple[str, tuple[list[Any], dict[str, Any]]]


@FEW
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(["typed-async", "typed-sync"]), _random_call | _well_typed_call),
        min_size=1,
        max_size=6,
    )
)
@example(
    calls=[
        ("typed-async", ([2**64, "b", []], {})),  # msgpack cannot hold it: TypeError at enqueue
        ("typed-sync", ([1, "b", [1]], {"e": {"x": 1, "y": 2}, "flag": True})),  # a dict becomes a Point
        ("typed-async", ([1, "b", [1], {"k": 1}, 1, 2.5], {"e": None})),  # ints become floats
        ("typed-sync", ([True, "b", []], {})),  # a bool is not an int
        ("typed-async", ([1, b"b", []], {})),  # bytes are not a str
        ("typed-sync", ([1, "b", [], None], {"a": 1})),  # a twice
        ("typed-async", ([1, "b", []], {"e": {"x": 1}})),  # a Point without y
    ]
)
def test_random_argument_shapes_convert_or_fail_with_bad_arguments(
    redis_server: RedisServer, calls: list[Call]
) -> None:
    anyio.run(_random_argument_shapes, redis_server.url, calls)


async def _random_argument_shapes(url: str, calls: list[Call]) -> None:
    async with Queue(queue_name("args"), url=url) as q:
        _register_typed(q)
        jobs: list[tuple[Job, bool]] = []
        for name, (args, kwargs) in calls:
            try:
                encode_payload(tuple(args), kwargs)
            except TypeError:
                with pytest.raises(TypeError, match="cannot be encoded"):
                    await q.enqueue(name, args=args, kwargs=kwargs)
                event("arguments: TypeError at enqueue")
                continue
            well_typed = _is_well_typed(args, kwargs)
            jobs.append((must(await q.enqueue(name, args=args, kwargs=kwargs)), well_typed))
        async with run_pool(q, concurrency=4):
            for job, well_typed in jobs:
                status, value = await outcome(job)
                event(f"arguments: {status.value}{' (well typed)' if well_typed else ''}")
                if status is JobStatus.SUCCEEDED:
                    assert value is True
                else:
                    assert not well_typed, value
                    assert value.startswith("BadArguments: "), value
            assert await must(await q.enqueue("typed-async", args=(1, "b", [2]))).result(timeout=5) is True
        await assert_all_ended(q, len(jobs) + 1)


def _is_well_typed(args: list[Any], kwargs: dict[str, Any]) -> bool:
    """Arguments built by ``_well_typed_call`` (exact types: they must be accepted)."""
    return (
        len(args) == 4
        and type(args[0]) is int
        and type(args[1]) is str
        and type(args[2]) is list
        and all(type(i) is int for i in args[2])
        and (args[3] is None or (type(args[3]) is dict and all(type(v) in (int, float) for v in args[3].values())))
        and set(kwargs) <= {"e", "flag"}
        and (type(kwargs.get("e", {})) is dict and all(type(v) is int for v in kwargs.get("e", {}).values()))
        and type(kwargs.get("flag", False)) is bool
        and (not kwargs.get("e") or set(kwargs["e"]) == {"x", "y"})
    )


# -- 3. arguments over max_payload_bytes --------------------------------------------------------------


def _sized_text(size: int) -> str:
    """A string whose payload ``[[text], {}]`` takes exactly ``size`` bytes (size >= 4)."""
    n = size - 4
    while len(encode_payload(("x" * n,), {})) > size:
        n -= 1
    return "x" * n


async def test_arguments_over_max_payload_bytes_raise_at_enqueue_and_write_nothing(redis_url: str) -> None:
    async with Queue(queue_name("small"), url=redis_url, max_payload_bytes=200) as small:

        @small.task(name="take")
        async def take(text: str) -> int:
            return len(text)

        at_limit = _sized_text(200)
        assert len(encode_payload((at_limit,), {})) == 200
        over = at_limit + "x"
        with pytest.raises(PayloadTooLarge, match=r"201 bytes, over max_payload_bytes=200") as caught:
            await take.enqueue(over)
        assert isinstance(caught.value, ValueError)
        with pytest.raises(PayloadTooLarge):
            await take.options(job_id="big", delay=5).enqueue(over)
        with pytest.raises(PayloadTooLarge):
            await small.enqueue("take", kwargs={"text": over})
        with pytest.raises(PayloadTooLarge):
            await take.enqueue_many([("ok",), (over,), ("ok too",)])  # all or nothing
        assert await queue_keys(small) == []
        assert all(n == 0 for n in (await small.counts()).values())

        job = await take.enqueue(at_limit)  # exactly at the limit is allowed
        async with run_pool(small):
            assert await job.result(timeout=5) == len(at_limit)

    with pytest.raises(ValueError, match="max_payload_bytes"):
        Queue("q", max_payload_bytes=0)


async def test_default_limit_is_one_mebibyte(queue: Queue) -> None:
    assert queue.max_payload_bytes == 1 << 20

    @queue.task(name="size")
    async def size(data: bytes) -> int:
        return len(data)

    with pytest.raises(PayloadTooLarge):
        await size.enqueue(b"\0" * (1 << 20))
    assert await queue_keys(queue) == []
    job = await size.enqueue(b"\0" * ((1 << 20) - 64))  # large but under the limit: stored and run
    async with run_pool(queue):
        assert await job.result(timeout=5) == (1 << 20) - 64


@settings(max_examples=40, deadline=None, database=None)
@given(size=st.integers(4, 600))
def test_payload_limit_is_exact(redis_server: RedisServer, size: int) -> None:
    anyio.run(_payload_limit, redis_server.url, size)


async def _payload_limit(url: str, size: int) -> None:
    async with Queue(queue_name("limit"), url=url, max_payload_bytes=300) as q:
        text = _sized_text(size)
        payload_len = len(encode_payload((text,), {}))
        if payload_len > 300:
            with pytest.raises(PayloadTooLarge):
                await q.enqueue("any.task", args=(text,))
            assert await queue_keys(q) == []
        else:
            job = must(await q.enqueue("any.task", args=(text,)))
            assert (await job.info()).args == (text,)  # info() of a job enqueued by name only, not yet claimed


# -- 4. names and ids that look like key syntax -------------------------------------------------------

ODD = [
    "with spaces",
    "{braces}",
    "}{",
    "{",
    "}",
    "{}",
    "colon:s:here",
    "job:{x}:done:",
    "ünïcødé-日本語-🙂",
    "*?[glob]\\",
    "nul\x00byte",
    " ",
]


@pytest.fixture(scope="module")
def own_server() -> Iterator[RedisServer]:
    """A private Redis: every key on it belongs to the test that flushed it last."""
    with RedisServer() as server:
        yield server


def hash_tag(key: bytes) -> bytes:
    """The part of a key that Redis Cluster hashes to pick the slot (the first ``{...}``, when not empty)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


async def assert_keys_in_slot(redis: Redis, queue: Queue) -> None:
    keys: list[bytes] = await redis.keys("*")  # type: ignore[assignment]
    assert keys
    for key in keys:
        assert key.startswith(queue.keys.prefix.encode()), key
        assert hash_tag(key) == queue.name.encode(), key


@pytest.mark.parametrize("text", ODD, ids=[repr(t) for t in ODD])
async def test_odd_task_names_and_job_ids_keep_the_key_layout(own_server: RedisServer, text: str) -> None:
    async with Queue(queue_name("odd"), url=own_server.url) as q:
        await q.redis.flushdb()
        started = anyio.Event()

        @q.task(name=text)
        async def task(x: int) -> list[Any]:
            return [text, x]

        @q.task(name=text + ":slow")
        async def slow() -> None:
            started.set()
            await anyio.sleep(30)

        job = must(await task.options(job_id=text).enqueue(1))
        scheduled = must(await task.options(job_id=text + "{s}", delay=60).enqueue(2))
        running = must(await slow.options(job_id="{" + text + "}").enqueue())
        async with run_pool(q, concurrency=2):
            assert await job.result(timeout=5) == [text, 1]
            info = await job.info()
            assert (info.id, info.task, info.status) == (text, text, JobStatus.SUCCEEDED)
            assert await q.job_ids(JobStatus.SUCCEEDED) == [text]
            assert await q.job_ids(JobStatus.SCHEDULED) == [text + "{s}"]
            with anyio.fail_after(5):
                await started.wait()
            assert await q.job_ids(JobStatus.ACTIVE) == ["{" + text + "}"]
            assert await running.cancel() is True  # the abort message carries the id
            with pytest.raises(JobCancelled):
                await running.result(timeout=5)
            assert await scheduled.reschedule() is True  # due now
            assert await scheduled.result(timeout=5) == [text, 2]
            again = must(await task.options(job_id=text + "{again}", delay=60).enqueue(3))
            assert await again.cancel() is True
            assert await again.status() is JobStatus.CANCELLED
            await assert_keys_in_slot(q.redis, q)
        assert await q.counts() == {
            JobStatus.SCHEDULED: 0, JobStatus.QUEUED: 0, JobStatus.ACTIVE: 0,
            JobStatus.SUCCEEDED: 2, JobStatus.FAILED: 0, JobStatus.CANCELLED: 2,
        }  # fmt: skip
        await assert_keys_in_slot(q.redis, q)


async def test_empty_job_id_or_task_name_is_rejected(queue: Queue) -> None:
    @queue.task
    async def noop() -> None: ...

    with pytest.raises(ValueError, match="job_id"):
        await noop.options(job_id="").enqueue()
    with pytest.raises(ValueError, match="name"):
        await queue.enqueue("")
    assert await queue_keys(queue) == []


_text = st.text(min_size=1, max_size=16)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=SLOW_OK)
@given(pairs=st.lists(st.tuples(_text, _text), min_size=1, max_size=5, unique_by=(lambda p: p[0], lambda p: p[1])))
def test_random_names_and_ids_run_and_stay_in_the_slot(own_server: RedisServer, pairs: list[tuple[str, str]]) -> None:
    anyio.run(_random_names_and_ids, own_server.url, pairs)


async def _random_names_and_ids(url: str, pairs: list[tuple[str, str]]) -> None:
    async with Queue(queue_name("random-ids"), url=url) as q:
        await q.redis.flushdb()
        for name, _ in pairs:
            q.task(name=name)(_named(name))
        jobs = [must(await q.enqueue(name, args=(i,), job_id=job_id)) for i, (name, job_id) in enumerate(pairs)]
        assert [j.id for j in jobs] == [job_id for _, job_id in pairs]
        async with run_pool(q, concurrency=4):
            for i, (job, (name, job_id)) in enumerate(zip(jobs, pairs, strict=True)):
                assert await job.result(timeout=5) == [name, i]
                info = await q.job(job_id).info()
                assert (info.id, info.task) == (job_id, name)
        assert sorted(await q.job_ids(JobStatus.SUCCEEDED)) == sorted(job_id for _, job_id in pairs)
        await assert_keys_in_slot(q.redis, q)


def _named(name: str) -> Callable[[int], Any]:
    async def run(i: int) -> list[Any]:
        return [name, i]

    return run


# -- 5. BaseException subclasses, sys.exit, KeyboardInterrupt, a stray CancelledError -------------------


class OwnBaseException(BaseException):
    """Not an Exception: a task may still raise it."""


def _raise_own() -> None:
    raise OwnBaseException("boom")


def _exit() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _stray_cancel() -> None:
    raise asyncio.CancelledError  # not a cancellation of the job: nothing cancelled it


RAISERS: dict[str, tuple[Callable[[], None], str]] = {
    "own": (_raise_own, "OwnBaseException: boom"),
    "exit": (_exit, "SystemExit: 3"),
    "interrupt": (_interrupt, "KeyboardInterrupt"),
    "cancel": (_stray_cancel, "CancelledError (raised by the task itself; the job was not cancelled)"),
}


def _async_raiser(fn: Callable[[], None]) -> Callable[[], Any]:
    async def run() -> None:
        await anyio.lowlevel.checkpoint()
        fn()

    return run


async def test_base_exceptions_fail_the_job_and_the_pool_goes_on(queue: Queue) -> None:
    for name, (fn, _) in RAISERS.items():
        queue.task(name=f"{name}-async")(_async_raiser(fn))
        queue.task(name=f"{name}-sync")(fn)  # a plain function: raised in a worker thread

    @queue.task(name="ok")
    async def ok(x: int) -> int:
        return x

    jobs = {(name, kind): must(await queue.enqueue(f"{name}-{kind}")) for name in RAISERS for kind in ("async", "sync")}
    queue.task(name="own-retried", retries=1, backoff=(0.0, 0.0))(_async_raiser(_raise_own))
    retried = must(await queue.enqueue("own-retried"))
    pool = Pool(queue, concurrency=4, **FAST)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        for (name, kind), job in jobs.items():
            status, error = await outcome(job)
            assert status is JobStatus.FAILED, (name, kind)
            assert error == RAISERS[name][1], (name, kind, error)
            info = await job.info()
            assert info.traceback and "Traceback" in info.traceback
            assert info.attempts == 1
        assert (await outcome(retried))[1] == "OwnBaseException: boom"
        assert (await retried.info()).attempts == 2  # counted as an ordinary error: retried
        assert await (await ok.enqueue(7)).result(timeout=5) == 7  # still serving, same registration
        assert pool.pool_ids[0] in await pool_ids(queue)
        pool.stop()
    await assert_all_ended(queue, len(jobs) + 2)


async def test_a_real_cancellation_still_propagates_and_gives_the_job_back(queue: Queue) -> None:
    started = anyio.Event()

    @queue.task(name="long")
    async def long() -> None:
        started.set()
        await anyio.sleep(30)

    job = await long.enqueue()
    pool = Pool(queue, **FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            await started.wait()
            await wait_status(queue, job.id, JobStatus.ACTIVE)
            tg.cancel_scope.cancel()  # not pool.stop(): the pool's caller cancels it
    info = await job.info()
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0  # given back uncharged


# -- 6. a task that blocks the event loop -------------------------------------------------------------


async def test_monitor_warns_when_the_loop_is_blocked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="aiotaskq")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: watch_event_loop(7.0, interval=0.05, threshold=0.3))
        await anyio.sleep(0.1)
        time.sleep(0.8)  # noqa: ASYNC251 - blocking the loop is the point
        await wait_for(lambda: any("event loop was blocked" in r.getMessage() for r in caplog.records), 2)
        tg.cancel_scope.cancel()
    warnings = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    lags = [float(re.search(r"blocked for (\d+\.\d+)s", w).group(1)) for w in warnings]  # type: ignore[union-attr]
    assert any(0.5 <= lag < 3 for lag in lags), warnings  # the 0.8 s block (a loaded machine may add others)
    assert all("stale_timeout is 7s" in w for w in warnings)


async def test_a_two_second_block_is_logged_and_the_pool_stays_alive(
    queue: Queue, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The blocked pool is a worker subprocess (faultapp's ``block_first``); an in-process pool with
    the same stale_timeout watches, ready to reap it. A 2 s block is under stale_timeout (4 s): the
    blocked pool's next heartbeat keeps it alive and its job is not requeued. (A block longer than
    stale_timeout: tests/test_faults.py::test_pool_declared_dead_cannot_overwrite_the_outcome.)"""
    caplog.set_level("WARNING", logger="aiotaskq")
    marker, release = queue.keys.prefix + "test:runs", queue.keys.prefix + "test:release"
    job = must(await queue.enqueue("fault.block_first", args=(marker, release), retries=1))
    log_path = tmp_path / "worker.log"
    worker = _start_worker(queue, redis_url, log_path, "--heartbeat-interval", "0.3", "--stale-timeout", "4")
    try:
        await wait_for(lambda: _runs(queue, marker, 1), 15, "the job to start in the worker")
        [blocked_id] = await pool_ids(queue)
        async with run_pool(queue, heartbeat_interval=0.3, stale_timeout=4.0):
            await anyio.sleep(2.0)  # the length of the block
            await queue.redis.set(release, "1")
            assert await job.result(timeout=10) == {"run": 1, "pid": worker.pid}
        info = await job.info()
        assert info.attempts == 1 and info.pool_id == blocked_id  # not requeued, not run twice
        assert blocked_id in await pool_ids(queue)
        await wait_for(lambda: "event loop was blocked" in log_path.read_text(), 5, "the warning in the worker log")
        lag = float(re.search(r"event loop was blocked for (\d+\.\d+)s", log_path.read_text()).group(1))  # type: ignore[union-attr]
        assert 1.5 <= lag < 10
        assert "declared dead" not in log_path.read_text()
        assert not [r for r in caplog.records if "reaped" in r.getMessage()]
        worker.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(worker.wait, 10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)


def _start_worker(queue: Queue, url: str, log_path: Path, *flags: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["FAULTAPP_QUEUE"] = queue.name
    env["AIOTASKQ_REDIS_URL"] = url
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aiotaskq", "worker", "tests.apps.faultapp:queue", "--poll-interval", "0.2", *flags],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _runs(queue: Queue, marker: str, n: int) -> bool:
    return int(await queue.redis.get(marker) or 0) == n
