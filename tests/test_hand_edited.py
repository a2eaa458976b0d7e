from __future__ import annotations

import anyio
import pytest

from aiotaskq import JobFailed, Pool, Queue
from aiotaskq._record import encode_record, record


async def _edit(queue: Queue, job_id: str, changes: dict[bytes, bytes]) -> None:
    """Change fields of a waiting job's record by hand."""
    raw: bytes | None = await queue.redis.hget(queue.keys.jobs, job_id)  # type: ignore[assignment]
    assert raw is not None, job_id
    fields = record(raw) | changes
    await queue.redis.hset(queue.keys.jobs, job_id, encode_record(fields))
    assert record(await queue.redis.hget(queue.keys.jobs, job_id)) == fields  # type: ignore[arg-type]


async def test_non_numeric_job_fields_do_not_stop_the_pool(queue: Queue) -> None:
    """A job record edited by hand (non-numeric retries/timeout) ends with an outcome,
    and the pool, its reaper and other jobs go on."""

    @queue.task(name="hand.boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @queue.task(name="hand.ok")
    async def ok() -> str:
        return "ok"

    bad = await boom.enqueue()
    weird = await ok.enqueue()
    await _edit(queue, bad.id, {b"retries": b"many", b"timeout": b"soon"})
    await _edit(queue, weird.id, {b"timeout": b"-3"})
    good = await ok.enqueue()
    pool = Pool(queue, concurrency=2, poll_interval=0.05, heartbeat_interval=0.2, stale_timeout=1)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with pytest.raises(JobFailed, match="boom"):
                await bad.result()
            assert await weird.result() == "ok"
            assert await good.result() == "ok"
            pool.stop()


async def test_an_error_text_with_lone_surrogates_is_recorded(queue: Queue) -> None:
    """An exception message holding undecodable bytes (surrogateescape) cannot stop the
    finisher: the job ends failed with the text made valid UTF-8."""

    @queue.task(name="hand.surrogate")
    async def surrogate() -> None:
        raise ValueError(b"caf\xe9".decode("utf-8", "surrogateescape"))

    job = await surrogate.enqueue()
    after = await queue.enqueue("hand.ok2")
    assert after is not None

    @queue.task(name="hand.ok2")
    async def ok2() -> str:
        return "ok"

    pool = Pool(queue, concurrency=1, poll_interval=0.05)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with pytest.raises(JobFailed, match="caf"):
                await job.result()
            assert await after.result() == "ok"
            pool.stop()
