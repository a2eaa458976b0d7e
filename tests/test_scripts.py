"""The Lua scripts, called through their wrappers; each test asserts the Redis state after."""

from __future__ import annotations

from typing import Any

import pytest
from _util import queued_ids, wait_for

from aiotaskq import Queue
from aiotaskq._listener import Listener
from aiotaskq._record import claimed_fields
from aiotaskq._scripts import Outcome, _ms
from aiotaskq.job import encode_payload
from aiotaskq.testing import job_fields

KEEP_MS = 60_000
PAYLOAD = encode_payload((1,), {"k": "v"})


async def enqueue(q: Queue, job_id: str, *, retries: int = 1, priority: int = 0, delay: float | None = None) -> int:
    s = q.scripts
    call = s.enqueue([(("t", priority, retries, "", _ms(delay), "", "", "", "", "", ""), job_id, PAYLOAD)])
    (code,) = await s.run(call)
    return int(code)


async def register(q: Queue, pool_id: str) -> None:
    out = await q.scripts.heartbeat(pool_id, register=True, info="{}", ttl_ms=60_000)
    assert out == [1]


async def claim_one(q: Queue, pool_id: str) -> tuple[str, int]:
    out = await q.scripts.claim(pool_id, 1)
    assert out[0] == 0 and out[2] == 0 and len(out) == 6, out
    return out[3].decode(), int(out[4])


def claimed(out: list[Any]) -> list[list[bytes]]:
    """The jobs a claim took from `queued` (after the handed records), each as id, task,
    payload, attempt, retries, timeout, enqueue time."""
    body = out[3 + int(out[2]) :]
    assert len(body) % 3 == 0, out
    return [claimed_fields(body[i], body[i + 1], body[i + 2]) for i in range(0, len(body), 3)]


async def job(q: Queue, job_id: str) -> dict[str, bytes]:
    (f,) = await job_fields(q, [job_id])
    assert f is not None, f"no job {job_id}"
    return f


async def redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def make_stale(q: Queue, pool_id: str) -> None:
    """Age a pool's heartbeat by a minute, as if it had died."""
    await q.redis.zadd(q.keys.pools, {pool_id: await redis_ms(q) - 60_000})


async def test_enqueue_writes_the_hash_and_a_zset_and_dedups(queue: Queue) -> None:
    k = queue.keys
    assert await enqueue(queue, "a", priority=5) == 1
    h = await job(queue, "a")
    assert h["status"] == b"queued" and h["task"] == b"t" and h["payload"] == PAYLOAD
    assert (h["prio"], h["retries"]) == (b"5", b"1")
    # Defaults are left out to save memory: attempts 0, no timeout, due now.
    assert "attempts" not in h and "timeout" not in h and "due_at" not in h
    assert await queued_ids(queue) == [b"a"]
    assert await enqueue(queue, "a") == 0  # deduplicated while queued
    assert await enqueue(queue, "b", delay=30) == 1
    b = await job(queue, "b")
    assert b["status"] == b"scheduled"
    assert int(b["due_at"]) - int(b["enq_at"]) == 30_000
    assert await queue.redis.zscore(k.scheduled, "b") == float(b["due_at"])
    assert await queue.redis.hget(k.stats, "enqueued") == b"2"


async def test_claim_marks_the_job_active_in_the_same_call(queue: Queue) -> None:
    k = queue.keys
    await enqueue(queue, "j")
    await register(queue, "P")
    out = await queue.scripts.claim("P", 5)
    assert out[0] == 0 and out[1] == -1 and out[2] == 0  # nothing scheduled, nothing handed over
    # id, task, payload, attempt, retries, timeout, enqueue time
    assert len(out) == 6 and out[3] == b"j" and out[4] == b"1"
    assert claimed(out) == [[b"j", b"t", PAYLOAD, b"1", b"1", b"", (await job(queue, "j"))["enq_at"]]]
    h = await job(queue, "j")
    assert h["status"] == b"active" and h["pool"] == b"P" and h["attempts"] == b"1"
    assert abs(int(h["start_at"]) - await redis_ms(queue)) < 1000
    assert await queue.redis.smembers(k.pool("P")) == {b"j"}
    assert await queued_ids(queue) == []
    assert await queue.redis.zscore(k.idle, "P") == 4  # wanted 5, got 1: idle with 4 free slots


async def test_claim_by_priority_then_fifo(queue: Queue) -> None:
    for job_id, prio in [("low", -5), ("a", 0), ("high", 5), ("b", 0)]:
        await enqueue(queue, job_id, priority=prio)
    await register(queue, "P")
    out = await queue.scripts.claim("P", 10)
    assert [row[0].decode() for row in claimed(out)] == ["high", "a", "b", "low"]


async def test_claim_promotes_due_jobs_and_reports_the_next_due_time(queue: Queue) -> None:
    k = queue.keys
    await register(queue, "P")
    await enqueue(queue, "later", delay=60)
    await enqueue(queue, "soon", delay=30)
    out = await queue.scripts.claim("P", 1)
    assert out[0] == 0 and len(out) == 3
    assert 29_000 <= out[1] <= 30_000  # ms until "soon" is due
    assert await queue.redis.zscore(k.idle, "P") == 1
    await queue.redis.zadd(k.scheduled, {"soon": await redis_ms(queue) - 1})  # as if 30 s went by
    assert await claim_one(queue, "P") == ("soon", 1)
    assert (await job(queue, "soon"))["status"] == b"active"
    assert await queue.redis.zrange(k.scheduled, 0, -1) == [b"later"]


async def test_claim_from_an_unregistered_pool_is_refused(queue: Queue) -> None:
    await enqueue(queue, "j")
    assert await queue.scripts.claim("ghost", 1) == [-1, -1, 0]
    assert (await job(queue, "j"))["status"] == b"queued"
    assert len(await queued_ids(queue)) == 1
    assert not await queue.redis.exists(queue.keys.pool("ghost"))


async def test_finish_is_fenced_by_pool_and_attempt(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j")
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")
    before = await job(queue, "j")
    fenced = [
        s.finish("j", "P", attempt + 1, "succeeded", b"\x01", KEEP_MS),
        s.finish("j", "Q", attempt, "succeeded", b"\x01", KEEP_MS),
        s.fail("j", "P", attempt + 1, "err", "tb", 0),
        s.fail("j", "Q", attempt, "err", "tb", -1),
        s.requeue("j", "Q", attempt),
        s.requeue("j", "P", attempt - 1),
    ]
    assert await s.run_many(fenced) == [-1] * len(fenced)
    assert await job(queue, "j") == before  # nothing changed
    assert await queue.redis.smembers(k.pool("P")) == {b"j"}

    assert await s.run(s.finish("j", "P", attempt, "succeeded", b"\x2a", KEEP_MS)) == 1
    h = await job(queue, "j")
    assert h["status"] == b"succeeded" and h["result"] == b"\x2a" and "end_at" in h and "duration" in h
    assert not await queue.redis.smembers(k.pool("P"))
    assert await queue.redis.zscore(k.succeeded, "j") == float(h["end_at"])
    assert 0 < await queue.redis.pttl(k.job("j")) <= KEEP_MS
    # A duplicate write (a reply lost with the connection) changes nothing.
    assert await s.run(s.finish("j", "P", attempt, "cancelled", b"", KEEP_MS)) == -1
    assert (await job(queue, "j"))["status"] == b"succeeded"


async def test_fail_retries_while_retries_are_left_then_fails(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j", retries=1)
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")
    assert await s.run(s.fail("j", "P", attempt, "E1", "TB1", 0)) == 2
    h = await job(queue, "j")
    assert h["status"] == b"scheduled" and h["error"] == b"E1" and h["tb"] == b"TB1"
    assert await queue.redis.zscore(k.scheduled, "j") == float(h["due_at"])
    assert not await queue.redis.smembers(k.pool("P"))

    job_id, attempt = await claim_one(queue, "P")  # due now: promoted and claimed
    assert (job_id, attempt) == ("j", 2)
    assert await s.run(s.fail("j", "P", attempt, "E2", "TB2", 0)) == 3  # out of retries
    h = await job(queue, "j")
    assert h["status"] == b"failed" and h["error"] == b"E2"
    assert await queue.redis.zscore(k.failed, "j") == float(h["end_at"])
    assert await queue.redis.pttl(k.job("j")) == -1  # failed jobs are kept until purged


async def test_fail_without_retry_ends_failed_at_once(queue: Queue) -> None:
    s = queue.scripts
    await enqueue(queue, "j", retries=5)
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")
    assert await s.run(s.fail("j", "P", attempt, "bad input", "", -1)) == 3
    assert (await job(queue, "j"))["status"] == b"failed"


async def test_requeue_gives_the_attempt_back_at_the_front(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await register(queue, "P")
    await enqueue(queue, "first")
    _, attempt = await claim_one(queue, "P")
    await enqueue(queue, "second")
    assert await s.run(s.requeue("first", "P", attempt)) == 1
    h = await job(queue, "first")
    assert h["status"] == b"queued" and h.get("attempts", b"0") == b"0"  # '' is 0: left out
    assert not await queue.redis.smembers(k.pool("P"))
    assert await claim_one(queue, "P") == ("first", 1)  # ahead of the later job, not charged


async def test_reap_requeues_the_jobs_of_a_stale_pool_and_charges_the_attempt(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j", retries=1)
    await register(queue, "dead")
    await register(queue, "live")
    _, attempt = await claim_one(queue, "dead")
    await make_stale(queue, "dead")
    await make_stale(queue, "live")  # a slow heartbeat of its own: the caller never reaps itself

    assert await s.reap(stale_ms=1000, keep_ms=KEEP_MS, own_pool_id="live") == [1, 1, 0]
    h = await job(queue, "j")
    assert h["status"] == b"queued" and h["attempts"] == b"1"
    assert b"j" in await queued_ids(queue)
    assert await queue.redis.zscore(k.pools, "dead") is None
    assert await queue.redis.zscore(k.pools, "live") is not None
    assert not await queue.redis.exists(k.pool("dead"))
    assert await s.reap(stale_ms=1000, keep_ms=KEEP_MS, own_pool_id="live") == [0, 0, 0]  # exactly once

    assert await claim_one(queue, "live") == ("j", 2)  # the lost attempt counted
    # The dead pool comes back: its outcome is fenced out, its heartbeat and claims refused.
    assert await s.run(s.finish("j", "dead", attempt, "succeeded", b"", KEEP_MS)) == -1
    assert await s.heartbeat("dead", register=False, info="{}", ttl_ms=1000) == [0]
    assert await s.claim("dead", 1) == [-1, -1, 0]
    assert (await job(queue, "j"))["pool"] == b"live"


async def test_reap_fails_a_job_out_of_retries_with_worker_lost(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j", retries=0)
    await register(queue, "dead")
    await claim_one(queue, "dead")
    await make_stale(queue, "dead")
    listener = Listener(queue.redis)  # on a shard channel from Redis 7 on
    told: list[bytes | None] = []
    try:
        await listener.subscribe(k.done("j"), told.append)
        assert await s.reap(stale_ms=1000, keep_ms=KEEP_MS, own_pool_id="live") == [1, 0, 1]
        await wait_for(lambda: bool(told), 2, "the end message")
    finally:
        await listener.close()
    assert told == [b"failed"]  # waiters are told
    h = await job(queue, "j")
    assert h["status"] == b"failed"
    assert h["error"].startswith(b"WorkerLost:") and b"dead" in h["error"]
    assert await queue.redis.zscore(k.failed, "j") is not None
    assert await queued_ids(queue) == []


async def test_cancel_requested_job_of_a_dead_pool_ends_cancelled(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j", retries=3)
    await register(queue, "dead")
    await claim_one(queue, "dead")
    assert await s.cancel("j", KEEP_MS) == 2  # active: its pool is asked to stop it
    h = await job(queue, "j")
    assert h["status"] == b"active" and h["cancel"] == b"1"
    # A heartbeat hands the request to the pool again (a missed abort message is caught up).
    assert await s.heartbeat("dead", register=False, info="{}", ttl_ms=1000) == [1, b"j"]
    await make_stale(queue, "dead")
    assert await s.reap(stale_ms=1000, keep_ms=KEEP_MS, own_pool_id="live") == [1, 0, 0]
    assert (await job(queue, "j"))["status"] == b"cancelled"
    assert await queue.redis.zscore(k.cancelled, "j") is not None
    assert await queued_ids(queue) == []


async def test_cancel_script_by_status(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "q")
    await enqueue(queue, "s", delay=60)
    assert await s.cancel("q", KEEP_MS) == 1
    assert await s.cancel("s", KEEP_MS) == 1
    assert await s.cancel("q", KEEP_MS) == 0  # already ended
    assert await s.cancel("missing", KEEP_MS) == 0
    assert await queued_ids(queue) == [] and await queue.redis.zcard(k.scheduled) == 0
    assert set(await queue.redis.zrange(k.cancelled, 0, -1)) == {b"q", b"s"}


async def test_leave_refuses_while_the_pool_holds_jobs(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j")
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")
    assert await s.leave("P") == 0
    assert await queue.redis.zscore(k.pools, "P") is not None
    assert await queue.redis.exists(k.pool_info("P"))
    assert await s.run(s.finish("j", "P", attempt, "succeeded", b"", KEEP_MS)) == 1
    assert await s.leave("P") == 1
    assert await queue.redis.zscore(k.pools, "P") is None
    assert not await queue.redis.exists(k.pool_info("P"))
    assert await queue.redis.zscore(k.idle, "P") is None


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_reschedule_script_starts_an_ended_job_over(queue: Queue, status: str) -> None:
    s, k = queue.scripts, queue.keys
    await enqueue(queue, "j", retries=0)
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")
    if status == "failed":
        await s.run(s.fail("j", "P", attempt, "E", "TB", -1))
    else:
        await s.run(s.finish("j", "P", attempt, "cancelled", b"", KEEP_MS))
    assert await s.reschedule("j", delay=10, at_ms=None) == 1
    h = await job(queue, "j")
    assert h["status"] == b"scheduled" and h.get("attempts", b"0") == b"0"  # '' is 0: left out
    assert "error" not in h and "end_at" not in h and "pool" not in h
    assert await queue.redis.zscore(k.ended(status), "j") is None
    assert await queue.redis.zscore(k.scheduled, "j") == float(h["due_at"])
    # No longer expiring: the ended record (the string with the keep time) is gone, and the
    # job waits as a record in the jobs hash, which has no expiry.
    assert not await queue.redis.exists(k.job("j"))
    assert await queue.redis.hexists(k.jobs, "j") and await queue.redis.pttl(k.jobs) == -1


async def test_settle_applies_a_mixed_batch_and_fences_each_outcome(queue: Queue) -> None:
    k, s = queue.keys, queue.scripts
    await register(queue, "p1")
    for job_id in ("ok", "bad", "again", "back", "stop", "stale"):
        assert await enqueue(queue, job_id, retries=1) == 1
    claimed = dict([await claim_one(queue, "p1") for _ in range(6)])
    batch = [
        Outcome("succeeded", "ok", "p1", claimed["ok"], b"\x2a", "", KEEP_MS),
        Outcome("fail", "bad", "p1", claimed["bad"], "ValueError: no", "tb", -1),
        Outcome("fail", "again", "p1", claimed["again"], "ValueError: later", "tb", 30_000),
        Outcome("requeue", "back", "p1", claimed["back"], b"", "", 0),
        Outcome("cancelled", "stop", "p1", claimed["stop"], b"", "", KEEP_MS),
        Outcome("succeeded", "stale", "p1", claimed["stale"] + 1, b"", "", KEEP_MS),  # wrong attempt
    ]
    assert await s.run(s.settle(batch)) == [1, 3, 2, 1, 1, -1]
    statuses = {i: (await job(queue, i))["status"] for i in claimed}
    assert statuses == {
        "ok": b"succeeded", "bad": b"failed", "again": b"scheduled",
        "back": b"queued", "stop": b"cancelled", "stale": b"active",
    }  # fmt: skip
    assert (await job(queue, "ok"))["result"] == b"\x2a"
    assert (await job(queue, "back")).get("attempts", b"0") == b"0"  # requeue is not charged
    assert await queue.redis.smembers(k.pool("p1")) == {b"stale"}  # only the fenced-out one is still held
    assert await queue.redis.zscore(k.scheduled, "again") is not None
    assert await queue.redis.zscore(k.failed, "bad") is not None
    assert await queue.redis.zscore(k.cancelled, "stop") is not None


async def test_one_enqueue_call_writes_a_batch_with_one_code_per_job(queue: Queue) -> None:
    k, s = queue.keys, queue.scripts
    assert await enqueue(queue, "b") == 1
    options = ("t", 0, "", "", "", "", "", "", "", "", "")
    call = s.enqueue([(options, "a", PAYLOAD), (options, "b", PAYLOAD), (options, "c", PAYLOAD)])
    assert await s.run(call) == [1, 0, 1]  # "b" is already queued: deduplicated
    assert await queued_ids(queue) == [b"b", b"a", b"c"]  # FIFO across and within calls
    assert await queue.redis.hget(k.stats, "enqueued") == b"3"
    assert (await job(queue, "c"))["enq_at"] == (await job(queue, "a"))["enq_at"]  # one TIME per call


async def test_waiting_jobs_live_in_one_list_per_priority_band(queue: Queue) -> None:
    k, s = queue.keys, queue.scripts
    for job_id, prio in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 0)]:
        await enqueue(queue, job_id, priority=prio)
    assert await queued_ids(queue) == [b"b", b"d", b"a", b"c", b"e"]
    assert await queue.redis.zrange(k.queued, 0, -1) == [b"5", b"0"]  # highest band first
    assert await queue.redis.lrange(k.band(5), 0, -1) == [b"b", b"d"]

    assert await s.cancel("d", KEEP_MS) == 1  # taken out of the middle of its band
    assert await s.cancel("c", KEEP_MS) == 1
    assert await queued_ids(queue) == [b"b", b"a", b"e"]
    await register(queue, "P")
    _, attempt = await claim_one(queue, "P")  # "b": band 5 is now empty and leaves the zset
    assert await queue.redis.zrange(k.queued, 0, -1) == [b"0"]
    assert not await queue.redis.exists(k.band(5))

    assert await s.run(s.requeue("b", "P", attempt)) == 1  # given back: the front of its band
    assert await queued_ids(queue) == [b"b", b"a", b"e"]
    out = await s.claim("P", 2)
    assert [row[0] for row in claimed(out)] == [b"b", b"a"]
    assert await s.reschedule("e", delay=60, at_ms=None) == 1  # out of its band, into scheduled
    assert await queued_ids(queue) == [] and await queue.redis.zcard(k.queued) == 0

    await enqueue(queue, "f", priority=-3)
    await enqueue(queue, "g")
    assert await queue.purge("queued") == 2
    assert await queued_ids(queue) == [] and await queue.redis.zcard(k.queued) == 0
    assert await job_fields(queue, ["f", "g"]) == [None, None]
    assert not await queue.redis.hexists(k.jobs, "f") and not await queue.redis.hexists(k.jobs, "g")
    assert not await queue.redis.exists(k.job("f"), k.job("g"))
