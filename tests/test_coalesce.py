"""Concurrent single enqueues on one queue go out together (aiotaskq/_batcher.py): fewer
script calls than jobs, each caller with its own outcome, and a lone call sent at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from redis.exceptions import RedisError

from aiotaskq import Job, JobStatus, PayloadTooLarge, Queue
from aiotaskq._batcher import FLIGHTS, MAX_JOBS
from aiotaskq.testing import RedisServer, job_fields

_seq = iter(range(1_000_000))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A server of this module's own: script calls are counted on it."""
    with RedisServer() as s:
        yield s


@pytest.fixture
async def q(server: RedisServer) -> AsyncIterator[Queue]:
    async with Queue(f"coalesce-{next(_seq)}", url=server.url) as queue:
        yield queue


async def _evalsha_calls(q: Queue) -> int:
    stats = await q.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _fields(q: Queue, job_id: str) -> dict[str, str]:
    (raw,) = await job_fields(q, [job_id])
    assert raw is not None, job_id
    return {k: v.decode() for k, v in raw.items() if k != "payload"}


def _call(q: Queue, i: int) -> Any:
    """Call i of six kinds in turn: tasks' defaults, per-call options, by name, a shared id."""
    a, b = q.tasks["a"], q.tasks["b"]
    kind = i % 6
    if kind == 0:
        return a.enqueue(i)
    if kind == 1:
        return b.options(priority=-5, retries=4).enqueue(i, label=f"l{i}")
    if kind == 2:
        return a.options(delay=60).enqueue(i)
    if kind == 3:
        return b.options(timeout=1.5, job_id=f"id-{i}").enqueue(i)
    if kind == 4:
        return q.enqueue("c.by.name", args=(i,), kwargs={"k": i}, priority=9)
    return a.options(job_id="shared", priority=1).enqueue(i)  # 50 callers, one id


async def _check(q: Queue, i: int, job: Job) -> None:
    """The stored job of call i holds that call's task, arguments and options."""
    info, fields = await job.info(), await _fields(q, job.id)
    assert info.args == (i,)
    kind = i % 6
    if kind == 0:
        assert (info.task, info.priority, fields.get("timeout"), info.status) == ("a", 3, "7", JobStatus.QUEUED)
        assert "retries" not in fields
    elif kind == 1:
        assert (info.task, info.priority, info.max_retries, info.kwargs) == ("b", -5, 4, {"label": f"l{i}"})
        assert "timeout" not in fields
    elif kind == 2:
        assert info.status is JobStatus.SCHEDULED and info.priority == 3
        assert int(fields["due_at"]) - int(fields["enq_at"]) == 60_000
    elif kind == 3:
        assert (job.id, fields["timeout"], info.priority) == (f"id-{i}", "1.5", 0)
    else:
        assert (info.task, info.priority, info.kwargs) == ("c.by.name", 9, {"k": i})


async def test_concurrent_calls_of_different_tasks_and_options_keep_their_own(q: Queue) -> None:
    @q.task(name="a", priority=3, timeout=7)
    async def a(n: int) -> int:
        return n

    @q.task(name="b")
    async def b(n: int, *, label: str = "") -> str:
        return label

    await q.enqueue("warm.up")  # scripts loaded: the batches below are the only script calls
    before = await _evalsha_calls(q)
    jobs: list[Job | None] = await asyncio.gather(*(_call(q, i) for i in range(300)))
    assert await _evalsha_calls(q) - before < 300 // 10  # coalesced: a handful of calls

    # One id in one batch: the first caller writes it, the other callers get None.
    shared = list(range(5, 300, 6))
    first = jobs[shared[0]]
    assert first is not None and first.id == "shared"
    assert all(jobs[i] is None for i in shared[1:])
    assert (await q.job("shared").info()).args == (5,)
    for i, job in enumerate(jobs):
        if i not in shared:
            assert job is not None
            await _check(q, i, job)
    counts = await q.counts()
    assert counts[JobStatus.QUEUED] + counts[JobStatus.SCHEDULED] == 300 - 49 + 1  # and warm.up
    assert await q.redis.hget(q.keys.stats, "enqueued") == b"252"


async def test_many_concurrent_calls_take_few_script_calls(q: Queue) -> None:
    await q.enqueue("warm.up")
    before = await _evalsha_calls(q)
    jobs = await asyncio.gather(*(q.enqueue("many", args=(i,)) for i in range(1000)))
    calls = await _evalsha_calls(q) - before
    assert len({j.id for j in jobs if j is not None}) == 1000
    # The first FLIGHTS calls go out alone, the rest in batches of at most MAX_JOBS.
    assert FLIGHTS + (1000 - FLIGHTS) // MAX_JOBS <= calls <= FLIGHTS + 1000 // MAX_JOBS + 1


async def test_sequential_calls_are_each_sent_alone(q: Queue) -> None:
    await q.enqueue("warm.up")
    for n in range(1, 11):
        before = await _evalsha_calls(q)
        assert await q.enqueue("alone", args=(n,)) is not None
        assert await _evalsha_calls(q) - before == 1  # one script call: one round trip


class _StoppedClock(asyncio.SelectorEventLoop):
    """An event loop whose clock never moves: no timer ever fires (I/O still does)."""

    def time(self) -> float:
        return 0.0


def test_no_timer_is_needed_to_send_a_lone_call_or_a_batch(server: RedisServer) -> None:
    """A call waiting on a timer (a flush after some microseconds) would never go out here."""
    done: list[int] = []

    async def scenario() -> None:
        async with Queue(f"coalesce-clock-{next(_seq)}", url=server.url) as q:
            assert await q.enqueue("lone") is not None
            done.append(1)
            jobs = await asyncio.gather(*(q.enqueue("burst", args=(i,)) for i in range(300)))
            done.append(len({j.id for j in jobs if j is not None}))

    loop = _StoppedClock()
    thread = threading.Thread(target=loop.run_until_complete, args=(scenario(),), daemon=True)
    thread.start()
    thread.join(20)
    try:
        assert not thread.is_alive(), f"an enqueue waited for a timer (done: {done})"
        assert done == [1, 300]
    finally:
        if not thread.is_alive():
            loop.close()


async def test_a_bad_argument_fails_only_its_own_call(q: Queue) -> None:
    q.max_payload_bytes = 1000

    @q.task(name="t")
    async def t(x: Any) -> None: ...

    bad: dict[int, tuple[type[Exception], str]] = {
        10: (ValueError, "priority"),
        11: (TypeError, ""),
        12: (PayloadTooLarge, "max_payload_bytes"),
        13: (ValueError, "job_id"),
        14: (ValueError, "delay"),
    }
    calls: list[Any] = []
    for i in range(200):
        if i == 10:
            calls.append(t.options(priority=5000).enqueue(i))
        elif i == 11:
            calls.append(t.enqueue(object()))
        elif i == 12:
            calls.append(t.enqueue("x" * 2000))
        elif i == 13:
            calls.append(t.options(job_id="").enqueue(i))
        elif i == 14:
            calls.append(t.options(delay=-1).enqueue(i))
        else:
            calls.append(t.enqueue(i))
    out = await asyncio.gather(*calls, return_exceptions=True)
    for i, kind in bad.items():
        assert isinstance(out[i], kind[0]) and kind[1] in str(out[i]), (i, out[i])
    good = [o for i, o in enumerate(out) if i not in bad]
    assert all(isinstance(o, Job) for o in good)
    assert (await q.counts())[JobStatus.QUEUED] == 195


async def test_a_caller_cancelled_while_it_waits_leaves_the_others_alone(q: Queue) -> None:
    await q.enqueue("warm.up")
    tasks = [asyncio.create_task(q.enqueue("c", args=(i,), job_id=f"c{i}")) for i in range(60)]
    await asyncio.sleep(0)  # every call has started: FLIGHTS are out, the rest wait to join
    assert q._batcher is not None and len(q._batcher._waiting) == 60 - FLIGHTS
    cancelled = range(20, 30)
    for i in cancelled:
        tasks[i].cancel()
    out = await asyncio.gather(*tasks, return_exceptions=True)
    for i, res in enumerate(out):
        if i in cancelled:
            assert isinstance(res, asyncio.CancelledError)
            assert await job_fields(q, [f"c{i}"]) == [None]  # never sent
        else:
            assert isinstance(res, Job) and res.id == f"c{i}"
    assert (await q.counts())[JobStatus.QUEUED] == 1 + 50
    assert await q.enqueue("after") is not None  # nothing left in flight
    assert q._batcher._in_flight == 0 and not q._batcher._waiting


async def test_scripts_missing_after_a_restart_are_loaded_once_for_every_batch(q: Queue) -> None:
    await q.enqueue("warm.up")
    await q.redis.script_flush()  # what a Redis restart does to the script cache
    jobs = await asyncio.gather(*(q.enqueue("reload", args=(i,)) for i in range(300)))
    assert len({j.id for j in jobs if j is not None}) == 300
    assert await q.redis.hget(q.keys.stats, "enqueued") == b"301"  # each job written once


async def test_redis_stopped_midway_fails_the_calls_it_cut_and_loses_no_other_job() -> None:
    """Producers enqueue concurrently (explicit ids, so every stored job can be checked)
    while Redis is killed. Each call either returned its Job, which is stored whole after
    the restart (AOF on), or raised a Redis error."""
    with RedisServer(appendonly=True) as server:
        q = Queue("coalesce-kill", url=server.url)
        returned: dict[str, int] = {}
        errors: list[BaseException] = []
        enough = asyncio.Event()

        async def producer(p: int) -> None:
            for n in range(p * 10_000, (p + 1) * 10_000):
                try:
                    job = await q.enqueue("kill.work", args=(n,), job_id=f"k{n}")
                except Exception as exc:
                    errors.append(exc)
                    return
                assert job is not None
                returned[job.id] = n
                if len(returned) >= 2000:
                    enough.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for p in range(40):
                    tg.start_soon(producer, p)
                await enough.wait()
                server.kill()
        assert len(errors) == 40 and all(isinstance(e, RedisError | OSError) for e in errors), errors[:3]
        await q.close()

        server.start()
        async with Queue("coalesce-kill", url=server.url) as again:
            for job_id, n in returned.items():
                info = await again.job(job_id).info()
                assert (info.task, info.args, info.status) == ("kill.work", (n,), JobStatus.QUEUED)
            # Jobs of the calls that failed may or may not have been written; none is damaged.
            stored = (await again.counts())[JobStatus.QUEUED]
            assert len(returned) <= stored <= len(returned) + FLIGHTS * MAX_JOBS
            ids: list[bytes] = await again.redis.lrange(again.keys.band("0"), 0, -1)  # type: ignore[assignment]
            for raw in ids:
                info = await again.job(raw.decode()).info()
                assert info.args == (int(raw.decode()[1:]),) and info.task == "kill.work"


async def test_enqueue_many_alongside_single_calls(q: Queue) -> None:
    @q.task(name="m")
    async def m(n: int) -> int:
        return n

    singles = [m.enqueue(i) for i in range(100)]
    many = m.options(priority=2).enqueue_many([(i,) for i in range(100, 350)])
    out = await asyncio.gather(*singles, many)
    assert all(isinstance(j, Job) for j in out[:100])
    batch = out[100]
    assert isinstance(batch, list) and len(batch) == 250
    first = out[0]
    assert isinstance(first, Job) and isinstance(batch[0], Job)
    assert (await batch[0].info()).priority == 2 and (await first.info()).priority == 0
    assert (await q.counts())[JobStatus.QUEUED] == 350


def test_a_lone_call_goes_out_from_its_callers_task(server: RedisServer) -> None:
    """No task of ours is created for a lone call (a batch is sent from a task of its own)."""

    async def scenario() -> tuple[int, int]:
        async with Queue(f"coalesce-tasks-{next(_seq)}", url=server.url) as q:
            await q.enqueue("warm.up")
            ours: list[str] = []
            loop = asyncio.get_running_loop()

            def counting(lp: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
                if "aiotaskq" in coro.cr_code.co_filename:  # redis-py makes some of its own
                    ours.append(coro.__qualname__)
                return asyncio.Task(coro, loop=lp, **kw)

            loop.set_task_factory(counting)
            try:
                for _ in range(5):
                    await q.enqueue("lone")
                lone = len(ours)
                await asyncio.gather(*(q.enqueue("burst") for _ in range(50)))
            finally:
                loop.set_task_factory(None)
            return lone, len(ours)

    lone, burst = asyncio.run(scenario())
    assert lone == 0
    assert burst >= 1  # the counting sees the batches' tasks
