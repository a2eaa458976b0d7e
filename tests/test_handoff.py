"""The hand-off: a job enqueued while a pool is idle goes straight to that pool's inbox,
already claimed, so it starts one round trip after it was sent (claim.lua, _lib.lua)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import anyio
import pytest
from _util import queued_ids, run_pool, wait_for

from aiotaskq import JobStatus, Pool, Queue, _presence
from aiotaskq._record import claimed_fields, encode_record
from aiotaskq._runner import _record_fields
from aiotaskq._scripts import _ms
from aiotaskq.job import encode_payload
from aiotaskq.testing import job_fields

PAYLOAD = encode_payload((1,), {})


async def enqueue(q: Queue, job_id: str, *, retries: int | None = None, delay: float | None = None) -> int:
    s = q.scripts
    options = ("t", 0, "" if retries is None else retries, "", _ms(delay), "", "", "", "", "", "")
    call = s.enqueue([(options, job_id, PAYLOAD)])
    (code,) = await s.run(call)
    return int(code)


async def idle_pool(q: Queue, pool_id: str, free: int) -> None:
    """Register a pool and let it find the queue empty: it registers `free` idle slots."""
    await q.scripts.heartbeat(pool_id, register=True, info="{}", ttl_ms=60_000)
    out = await q.scripts.claim(pool_id, free)
    assert out == [0, -1, 0], out
    assert await q.redis.zscore(q.keys.idle, pool_id) == free


async def job(q: Queue, job_id: str) -> dict[str, bytes]:
    (f,) = await job_fields(q, [job_id])
    assert f is not None, f"no job {job_id}"
    return f


async def test_a_due_job_goes_to_the_idle_pool_with_the_most_free_slots(queue: Queue) -> None:
    k = queue.keys
    await queue.redis.hset(k.tasks, "t", 3)  # the task's default retries, as pools register them
    await idle_pool(queue, "small", 2)
    await idle_pool(queue, "big", 5)

    assert await enqueue(queue, "j") == 1
    h = await job(queue, "j")
    assert h["status"] == b"active" and h["pool"] == b"big" and h["attempts"] == b"1"
    # The job keeps '' retries (the task's default); the pool gets them resolved from the
    # tasks hash in the inbox record (checked below).
    assert "retries" not in h
    assert "start_at" in h
    assert await queue.redis.smembers(k.pool("big")) == {b"j"}
    assert await queued_ids(queue) == []
    records = await queue.redis.lrange(k.inbox("big"), 0, -1)
    assert [_record_fields(cast(bytes, r)) for r in records] == [[b"j", b"t", PAYLOAD, b"1", b"3", b"", h["enq_at"]]]
    assert await queue.redis.zscore(k.idle, "big") == 4  # one slot taken
    assert await queue.redis.llen(k.inbox("small")) == 0

    # The last free slot of a pool takes it out of `idle`; with none left, jobs wait in `queued`.
    for i in range(7):
        await enqueue(queue, f"more{i}")
    assert await queue.redis.zcard(k.idle) == 0
    assert await queue.redis.llen(k.inbox("big")) == 5 and await queue.redis.llen(k.inbox("small")) == 2
    assert await queued_ids(queue) == [b"more6"]


async def test_a_duplicate_id_is_not_handed_over_twice(queue: Queue) -> None:
    await idle_pool(queue, "P", 3)
    assert await enqueue(queue, "j") == 1
    assert await enqueue(queue, "j") == 0
    assert await queue.redis.llen(queue.keys.inbox("P")) == 1
    assert await queue.redis.zscore(queue.keys.idle, "P") == 2


async def test_a_delayed_job_is_not_handed_over_but_wakes_idle_pools(queue: Queue) -> None:
    k = queue.keys
    await idle_pool(queue, "P", 3)
    assert await enqueue(queue, "later", delay=30) == 1
    assert (await job(queue, "later"))["status"] == b"scheduled"
    assert await queue.redis.lrange(k.inbox("P"), 0, -1) == [b""]  # a wake-up: plan the next claim again
    assert await queue.redis.zcard(k.idle) == 0


async def test_a_claim_takes_the_inbox_first_and_registers_what_is_left(queue: Queue) -> None:
    k = queue.keys
    await idle_pool(queue, "P", 4)
    await enqueue(queue, "handed", retries=0)
    await queue.redis.rpush(k.inbox("P"), "")  # a wake-up entry is dropped
    await queue.redis.rpush(k.band(0), "waiting")  # a job queued behind the pool's back
    await queue.redis.zadd(k.queued, {"0": 0})
    waiting = encode_record({b"task": b"t", b"payload": PAYLOAD, b"status": b"queued"})
    await queue.redis.hset(k.jobs, "waiting", waiting)

    out = await queue.scripts.claim("P", 4)
    assert out[:3] == [0, -1, 1]
    assert _record_fields(out[3])[0] == b"handed"
    assert out[4] == b"waiting" and len(out) == 4 + 3 and out[6] == waiting  # id, attempt, record
    assert claimed_fields(out[4], out[5], out[6]) == [b"waiting", b"t", PAYLOAD, b"1", b"", b"", b""]  # no enq_at
    assert await queue.redis.exists(k.inbox("P")) == 0
    assert await queue.redis.zscore(k.idle, "P") == 2  # wanted 4, got 2

    out = await queue.scripts.claim("P", 0)  # no free slot: not idle
    assert out == [0, -1, 0] and await queue.redis.zscore(k.idle, "P") is None


async def test_reconcile_gives_back_what_the_pool_never_started(queue: Queue) -> None:
    k, s = queue.keys, queue.scripts
    await idle_pool(queue, "P", 5)
    for job_id in ("running", "lost", "waiting"):
        await enqueue(queue, job_id)
    await queue.redis.lpop(k.inbox("P"))  # "running": popped and started
    await queue.redis.lpop(k.inbox("P"))  # "lost": popped, but the reply never arrived

    assert await s.reconcile("P", ["running"], leaving=False) == 1
    lost = await job(queue, "lost")
    assert lost["status"] == b"queued" and lost.get("attempts", b"0") == b"0"  # uncharged ('' is 0)
    assert await queue.redis.smembers(k.pool("P")) == {b"running", b"waiting"}
    # "waiting" is left to the pool (with a wake-up entry: "lost" is queued again).
    assert [r for r in await queue.redis.lrange(k.inbox("P"), 0, -1) if r] != []
    assert len([r for r in await queue.redis.lrange(k.inbox("P"), 0, -1) if r]) == 1

    # A pool that stops claiming gives back its inbox too, and is no longer idle.
    assert await s.reconcile("P", ["running"], leaving=True) == 1
    assert (await job(queue, "waiting"))["status"] == b"queued"
    assert await queue.redis.smembers(k.pool("P")) == {b"running"}
    assert await queue.redis.exists(k.inbox("P")) == 0
    assert await queue.redis.zscore(k.idle, "P") is None
    assert await queued_ids(queue) == [b"waiting", b"lost"]  # each given back to the front of its band


async def test_the_reaper_gives_back_a_dead_pools_inbox_uncharged(queue: Queue) -> None:
    k, s = queue.keys, queue.scripts
    await idle_pool(queue, "dead", 3)
    await enqueue(queue, "started", retries=1)
    await enqueue(queue, "unstarted", retries=0)
    await queue.redis.lpop(k.inbox("dead"))  # "started" was popped by the pool
    await queue.redis.zadd(k.pools, {"dead": 0})  # no heartbeat since the epoch

    assert await s.reap(stale_ms=1000, keep_ms=60_000, own_pool_id="live") == [1, 2, 0]
    started, unstarted = await job(queue, "started"), await job(queue, "unstarted")
    assert started["status"] == b"queued" and started["attempts"] == b"1"  # a lost attempt counts
    # Never started: no attempt lost, so even a job without retries is requeued, not failed.
    assert unstarted["status"] == b"queued" and unstarted.get("attempts", b"0") == b"0"  # '' is 0
    assert await queue.redis.exists(k.inbox("dead"), k.pool("dead")) == 0
    assert await queue.redis.zscore(k.idle, "dead") is None


async def test_an_idle_pool_starts_a_handed_job_without_claiming_it(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = anyio.Event(), anyio.Event()
    monkeypatch.setattr(_presence, "_TICK", 30.0)  # one presence tick at the start, then none while we count

    @queue.task(name="handed.work")
    async def work() -> None:
        started.set()
        await release.wait()  # no finish (settle) and no claim for a freed slot while we count

    await queue.redis.script_load(queue.scripts._script("enqueue").script)  # no NOSCRIPT retry to count
    # One slot, held by the job: the pool has no reason to claim until it ends. Long periodic
    # intervals: no heartbeat, reaper, tick or reconcile script runs while we count.
    quiet = {"poll_interval": 30.0, "heartbeat_interval": 30.0, "stale_timeout": 90.0}
    async with run_pool(queue, idle=True, concurrency=1, **quiet) as pool:
        runner = pool.runners[0]
        await wait_for(lambda: _ticked(queue, runner.pool_id), 5, "the pool's first presence tick")
        before = await _calls(queue, "evalsha")
        j = await work.enqueue()
        with anyio.fail_after(2):
            await started.wait()
        # The pool got the job from its blocking pop: the enqueue was the only script call.
        assert await _calls(queue, "evalsha") - before == 1
        assert (await j.info()).pool_id == runner.pool_id
        release.set()
        await j.result(timeout=5)


async def _ticked(q: Queue, pool_id: str) -> bool:
    return await q.redis.hexists(q.keys.presence, pool_id)


async def _calls(q: Queue, command: str) -> int:
    stats = await q.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_handed_job_whose_pop_reply_was_lost_is_given_back_and_run(queue: Queue) -> None:
    """The pool's blocking pop ran in Redis but its reply was lost with the connection:
    the job sits active under the pool, in no inbox. Reconciliation gives it back."""
    ran: list[int] = []

    @queue.task(name="lost.handed")
    async def work(i: int) -> None:
        ran.append(i)

    pool = Pool(queue, concurrency=2, heartbeat_interval=0.2, stale_timeout=1.0, poll_interval=0.05)
    runner = pool.runners[0]
    await idle_pool(queue, runner.pool_id, 2)
    j = await work.enqueue(7)
    assert await j.status() == JobStatus.ACTIVE
    assert await queue.redis.lpop(queue.keys.inbox(runner.pool_id))  # the lost reply

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            await j.result()
            pool.stop()
    assert ran == [7]
    assert (await j.info()).attempts == 1  # not charged for the lost hand-off


async def test_a_pool_on_two_queues_never_runs_more_than_its_concurrency(queue: Queue) -> None:
    """Each queue has the pool's free slot registered; of two jobs handed over at once,
    the second must not sit claimed (active) in the pool while the first runs: it goes
    back to its queue, uncharged, and is claimed when the slot frees."""
    other = Queue(queue.name + "-b", url=queue.url)
    running, peak = 0, 0

    async def body() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.2)
        running -= 1

    a_task = queue.task(name="a")(body)
    b_task = other.task(name="b")(body)
    try:
        async with run_pool([queue, other], concurrency=1, poll_interval=5.0, idle=True):
            a = await a_task.enqueue()
            b = await b_task.enqueue()
            await a.result(timeout=5)
            await b.result(timeout=5)
        assert peak == 1
        a_info, b_info = await a.info(), await b.info()
        assert b_info.attempts == 1  # given back uncharged
        assert a_info.finished_at is not None and b_info.started_at is not None
        assert b_info.started_at >= a_info.finished_at - timedelta(milliseconds=50)
    finally:
        await other.redis.flushdb()
        await other.close()


async def test_a_malformed_inbox_record_is_dropped_and_the_pool_goes_on(queue: Queue) -> None:
    ran: list[int] = []

    @queue.task(name="after.garbage")
    async def work(i: int) -> None:
        ran.append(i)

    async with run_pool(queue, poll_interval=5.0, idle=True) as pool:
        inbox = queue.keys.inbox(pool.runners[0].pool_id)
        await queue.redis.rpush(inbox, b"3:abc9:notenough")
        await queue.redis.rpush(inbox, b"garbage")
        j = await work.enqueue(1)
        await j.result(timeout=5)
    assert ran == [1]
