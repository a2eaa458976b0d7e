"""Hooks: the pool's on_startup/on_shutdown, per-job before_job/after_job with the outcome,
from Pool parameters and from the queue's decorators, and the pool's ``state``."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from _util import FAST, run_pool, wait_status

from aiotaskq import JobContext, JobFailed, JobOutcome, JobStatus, Pool, Queue, Retry, current_job


async def test_after_job_sees_every_kind_of_outcome(queue: Queue) -> None:
    seen: dict[str, tuple[str, JobOutcome]] = {}
    before: list[str] = []
    started = anyio.Event()

    def before_job(ctx: JobContext) -> None:
        assert current_job() is ctx
        before.append(ctx.id)

    async def after_job(ctx: JobContext, outcome: JobOutcome) -> None:
        seen[ctx.id] = (ctx.task, outcome)

    @queue.task(name="h.ok")
    async def ok(x: int) -> int:
        return x * 2

    @queue.task(name="h.boom", retries=1, backoff=lambda attempt: 30.0)
    async def boom() -> None:
        raise ValueError("boom")

    @queue.task(name="h.final")
    async def final() -> None:
        raise KeyError("gone")

    @queue.task(name="h.asks", retries=1)
    async def asks() -> None:
        raise Retry(delay=60)

    @queue.task(name="h.slow")
    async def slow() -> None:
        started.set()
        await anyio.sleep(30)

    calls: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("ok", ok, (21,)), ("boom", boom, ()), ("final", final, ()), ("asks", asks, ()), ("slow", slow, ()),
    ]  # fmt: skip
    jobs = {name: await t.enqueue(*a) for name, t, a in calls}
    unknown = await queue.enqueue("h.not-registered")
    assert unknown is not None
    async with run_pool(queue, before_job=before_job, after_job=after_job):
        with anyio.fail_after(5):
            await started.wait()
        assert await jobs["slow"].cancel()
        await wait_status(queue, jobs["slow"].id, JobStatus.CANCELLED)
        assert await jobs["ok"].result(timeout=5) == 42
        await wait_status(queue, unknown.id, JobStatus.FAILED)
        await wait_status(queue, jobs["final"].id, JobStatus.FAILED)

    out = {name: seen[j.id][1] for name, j in jobs.items()}
    assert out["ok"] == JobOutcome("succeeded", result=42)
    assert out["boom"].status == "retrying" and out["boom"].retry_in == 30.0
    assert isinstance(out["boom"].error, ValueError)
    assert out["final"].status == "failed" and isinstance(out["final"].error, KeyError)
    assert out["asks"].status == "retrying" and out["asks"].retry_in == 60.0
    assert isinstance(out["asks"].error, Retry)
    assert out["slow"] == JobOutcome("cancelled")
    assert seen[unknown.id][1].status == "failed"  # could not start: no task of that name here
    assert set(before) == {j.id for j in jobs.values()}  # before_job runs only when the task starts


async def test_an_attempt_cut_short_by_shutdown_is_interrupted(queue: Queue) -> None:
    outcomes: list[JobOutcome] = []
    started = anyio.Event()

    @queue.task(name="h.long")
    async def long() -> None:
        started.set()
        await anyio.sleep(30)

    job = await long.enqueue()
    async with run_pool(queue, shutdown_timeout=0.1, after_job=lambda ctx, o: outcomes.append(o)):
        with anyio.fail_after(5):
            await started.wait()
    assert outcomes == [JobOutcome("interrupted")]
    assert await job.status() is JobStatus.QUEUED  # handed back, uncharged


async def test_a_before_job_error_fails_the_attempt_like_a_task_error(queue: Queue) -> None:
    runs: list[int] = []
    outcomes: list[JobOutcome] = []

    @queue.before_job
    async def needs_a_connection(ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("database unreachable")

    @queue.after_job
    def record(ctx: JobContext, outcome: JobOutcome) -> None:
        outcomes.append(outcome)

    @queue.task(name="h.guarded", retries=1, backoff=lambda attempt: 0.0)
    async def guarded() -> int:
        runs.append(current_job().attempt)
        return current_job().attempt

    @queue.task(name="h.guarded_once")
    async def guarded_once() -> None:
        runs.append(-1)

    retried = await guarded.enqueue()
    failed = await guarded_once.enqueue()
    async with run_pool(queue):
        assert await retried.result(timeout=5) == 2
        with pytest.raises(JobFailed) as exc:
            await failed.result(timeout=5)
    assert runs == [2]  # the task never ran on an attempt whose hook failed
    assert exc.value.error == "ConnectionError: database unreachable (in a before_job hook)"
    assert "needs_a_connection" in exc.value.traceback
    assert sorted(o.status for o in outcomes) == ["failed", "retrying", "succeeded"]


async def test_an_after_job_error_is_logged_and_the_outcome_stands(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiotaskq")
    calls: list[str] = []

    def first(ctx: JobContext, outcome: JobOutcome) -> None:
        calls.append("first")

    @queue.after_job
    def broken(ctx: JobContext, outcome: JobOutcome) -> None:
        calls.append("broken")
        raise RuntimeError("metrics backend down")

    @queue.task(name="h.fine")
    async def fine() -> str:
        return "done"

    job = await fine.enqueue()
    async with run_pool(queue, after_job=first):
        assert await job.result(timeout=5) == "done"
    assert calls == ["broken", "first"]  # last registered first; the error stops nothing
    [rec] = [r for r in caplog.records if "after_job hook" in r.getMessage()]
    assert rec.levelno == logging.ERROR
    assert f"broken failed for job {job.id} (h.fine); the job's outcome (succeeded) stands" in rec.getMessage()
    assert rec.exc_info is not None and "metrics backend down" in str(rec.exc_info[1])


async def test_startup_resources_reach_tasks_and_shutdown_closes_them(queue: Queue) -> None:
    events: list[str] = []

    class Client:
        closed = False

        def get(self, path: str) -> str:
            assert not self.closed
            return f"GET {path}"

    def own_startup(pool: Pool) -> None:
        events.append("pool:start")

    @queue.on_startup
    async def open_client(pool: Pool) -> None:
        events.append("queue:start")
        pool.state.http = Client()

    @queue.on_shutdown
    async def close_client(pool: Pool) -> None:
        events.append("queue:stop")
        pool.state.http.closed = True

    @queue.task(name="h.fetch")
    async def fetch(path: str) -> str:
        return str(current_job().state.http.get(path))

    @queue.task(name="h.fetch_sync")
    def fetch_sync(path: str) -> str:
        return str(current_job().state.http.get(path))

    a = await fetch.enqueue("/a")
    b = await fetch_sync.enqueue("/b")
    pool = Pool(queue, **{**FAST, "on_startup": own_startup, "on_shutdown": lambda p: events.append("pool:stop")})
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            assert await a.result() == "GET /a"
            assert await b.result() == "GET /b"
            pool.stop()
    assert events == ["pool:start", "queue:start", "queue:stop", "pool:stop"]  # shutdown in reverse order
    assert pool.state.http.closed


async def test_queue_hooks_run_for_that_queues_jobs_only(redis_url: str, queue: Queue) -> None:
    other = Queue(f"{queue.name}-other", url=redis_url)
    seen: list[tuple[str, str]] = []
    startups: list[str] = []

    @queue.before_job
    def mine(ctx: JobContext) -> None:
        seen.append(("mine", ctx.queue))

    @other.before_job
    def theirs(ctx: JobContext) -> None:
        seen.append(("theirs", ctx.queue))

    @queue.on_startup
    @other.on_startup
    def shared(pool: Pool) -> None:  # on both queues: runs once per pool
        startups.append("shared")

    @queue.task(name="h.a")
    async def a() -> None: ...

    @other.task(name="h.b")
    async def b() -> None: ...

    try:
        ja, jb = await a.enqueue(), await b.enqueue()
        async with run_pool([queue, other]):
            await ja.result(timeout=5)
            await jb.result(timeout=5)
    finally:
        await other.close()
    assert sorted(seen) == [("mine", queue.name), ("theirs", other.name)]
    assert startups == ["shared"]


async def test_a_failing_startup_hook_stops_the_pool_before_it_serves(queue: Queue) -> None:
    stopped: list[bool] = []

    @queue.on_startup
    def broken(pool: Pool) -> None:
        raise RuntimeError("no database")

    @queue.on_shutdown
    def shutdown(pool: Pool) -> None:
        stopped.append(True)

    @queue.task(name="h.never")
    async def never() -> None: ...

    job = await never.enqueue()
    pool = Pool(queue, **FAST)
    with anyio.fail_after(10), pytest.raises(RuntimeError, match=r"^no database$"):
        await pool.run()
    assert await job.status() is JobStatus.QUEUED  # nothing was claimed
    assert await queue.redis.zcard(queue.keys.pools) == 0  # the pool left
    assert stopped == []  # the startup did not complete: nothing to shut down


async def test_a_failing_shutdown_hook_is_logged_and_the_others_still_run(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiotaskq")
    ran: list[str] = []

    @queue.on_shutdown
    def first(pool: Pool) -> None:
        ran.append("first")

    @queue.on_shutdown
    def broken(pool: Pool) -> None:
        ran.append("broken")
        raise RuntimeError("close failed")

    async with run_pool(queue, idle=True):
        pass
    assert ran == ["broken", "first"]
    assert any("on_shutdown hook" in r.getMessage() and "broken" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["on_startup", "on_shutdown", "before_job", "after_job"])
def test_a_hook_must_be_callable(queue: Queue, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}: expected a function"):
        Pool(queue, **{name: "not a function"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"^{name}: expected a function"):
        getattr(queue, name)(42)


async def test_hooks_see_the_job_context(queue: Queue) -> None:
    seen: list[Any] = []

    @queue.before_job
    def before(ctx: JobContext) -> None:
        seen.append(("before", ctx.id, ctx.attempt, ctx.task, ctx.queue))

    @queue.after_job
    def after(ctx: JobContext, outcome: JobOutcome) -> None:
        seen.append(("after", ctx.id, ctx.attempt, ctx.task, ctx.queue, current_job() is ctx))

    @queue.task(name="h.ctx")
    async def task() -> None: ...

    job = await task.enqueue()
    async with run_pool(queue):
        await job.result(timeout=5)
    assert seen == [("before", job.id, 1, "h.ctx", queue.name), ("after", job.id, 1, "h.ctx", queue.name, True)]


async def test_after_job_runs_when_the_pool_itself_is_cancelled(queue: Queue) -> None:
    outcomes: list[JobOutcome] = []
    started = anyio.Event()

    @queue.after_job
    async def record(ctx: JobContext, outcome: JobOutcome) -> None:
        await anyio.sleep(0.01)  # an await in a cancelled pool: shielded
        outcomes.append(outcome)

    @queue.task(name="h.hangs")
    async def hangs() -> None:
        started.set()
        await anyio.sleep(30)

    job = await hangs.enqueue()
    pool = Pool(queue, **FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            await started.wait()
            tg.cancel_scope.cancel()  # not a graceful stop
    assert outcomes == [JobOutcome("interrupted")]
    assert await job.status() is JobStatus.QUEUED  # handed back, uncharged
