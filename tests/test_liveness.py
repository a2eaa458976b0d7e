"""Liveness by the freshest evidence: a dead pool gets no new job (the hand-off checks its
alive time), and a pool whose process died is reaped within seconds with the default
settings (missed ticks plus a closed connection, aiotaskq/_presence.py), while a pool that
is only blocked keeps its jobs."""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable
from pathlib import Path

import anyio
from _util import queued_ids
from _util import wait_for as wait_until
from _workers import marker_for, runs, wait_for, workers
from redis.asyncio import Redis

from aiotaskq import Pool, Queue
from aiotaskq.job import encode_payload
from aiotaskq.testing import job_fields

PAYLOAD = encode_payload((1,), {})


async def _enqueue(q: Queue, job_id: str) -> int:
    s = q.scripts
    call = s.enqueue([(("t", 0, "", "", "", "", "", "", "", "", ""), job_id, PAYLOAD)])
    (code,) = await s.run(call)
    return int(code)


async def _idle(q: Queue, pool_id: str, free: int, alive_ms: int) -> None:
    await q.scripts.heartbeat(pool_id, register=True, info="{}", ttl_ms=60_000, alive_ms=alive_ms)
    assert await q.scripts.claim(pool_id, free, alive_ms=alive_ms) == [0, -1, 0]


async def _job(q: Queue, job_id: str) -> dict[str, bytes]:
    (f,) = await job_fields(q, [job_id])
    assert f is not None, f"no job {job_id}"
    return f


async def _redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return sec * 1000 + usec // 1000


async def _past_alive(q: Queue, pool_id: str, by_ms: int = 0) -> bool:
    alive = await q.redis.zscore(q.keys.alive, pool_id)
    return alive is not None and await _redis_ms(q) > alive + by_ms


# -- the hand-off (item 3) ------------------------------------------------------------------------


async def test_the_hand_off_skips_a_pool_past_its_alive_time_and_takes_back_its_inbox(queue: Queue) -> None:
    k = queue.keys
    await _idle(queue, "dead", 5, alive_ms=150)
    assert await _enqueue(queue, "early") == 1  # handed to "dead" while it still counted as alive
    assert (await _job(queue, "early"))["pool"] == b"dead"
    await _idle(queue, "live", 2, alive_ms=60_000)
    await wait_until(lambda: _past_alive(queue, "dead"), 5, "the dead pool's alive time to pass")

    assert await _enqueue(queue, "late") == 1
    late = await _job(queue, "late")
    assert late["status"] == b"active" and late["pool"] == b"live"
    early = await _job(queue, "early")
    assert early["status"] == b"queued" and early.get("attempts", b"0") == b"0"  # given back, uncharged
    assert "pool" not in early
    assert await queued_ids(queue) == [b"early"]
    assert await queue.redis.smembers(k.pool("dead")) == set()
    assert await queue.redis.exists(k.inbox("dead")) == 0
    assert await queue.redis.zscore(k.idle, "dead") is None
    assert await queue.redis.lrange(k.inbox("live"), 0, -1) != []  # "late", and a wake-up for "early"


async def test_a_claim_and_a_heartbeat_keep_a_pool_alive(queue: Queue) -> None:
    await _idle(queue, "p", 3, alive_ms=150)
    await wait_until(lambda: _past_alive(queue, "p"), 5, "the alive time to pass")
    await queue.scripts.heartbeat("p", register=False, info="{}", ttl_ms=60_000, alive_ms=60_000)
    assert not await _past_alive(queue, "p")
    assert await _enqueue(queue, "j") == 1
    assert (await _job(queue, "j"))["pool"] == b"p"


# -- presence ticks and the fast reaper (item 4) --------------------------------------------------


async def test_presence_names_the_pools_past_their_alive_time_and_reap_takes_only_those(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    for p in ("quiet", "ticking"):
        await s.heartbeat(p, register=True, info="{}", ttl_ms=60_000, alive_ms=100)
    assert await s.presence("quiet", 100, "run:7", 0) == (True, [])
    assert await queue.redis.hget(k.presence, "quiet") == b"run:7"
    await s.run(s.enqueue([(("t", 0, 3, "", "", "", "", "", "", "", ""), "j", PAYLOAD)]))
    assert (await s.claim("quiet", 1, alive_ms=100))[3] == b"j"
    await wait_until(lambda: _past_alive(queue, "quiet", 50), 5, "quiet's alive time to pass by the grace")

    registered, suspects = await s.presence("ticking", 60_000, "", 50)
    assert registered and suspects == [("quiet", "run:7")]
    assert await s.reap(60_000, 60_000, "ticking", suspects=["ticking", "ghost"], grace_ms=50) == [0, 0, 0]
    assert await s.reap(60_000, 60_000, "ticking", suspects=["quiet"], grace_ms=50) == [1, 1, 0]
    j = await _job(queue, "j")
    assert j["status"] == b"queued"
    assert j["attempts"] == b"1"  # the lost attempt counts
    assert await queue.redis.zscore(k.pools, "quiet") is None
    assert await queue.redis.zscore(k.alive, "quiet") is None
    assert await queue.redis.hget(k.presence, "quiet") is None
    assert await s.presence("quiet", 100, "run:8", 0) == (False, [])  # reaped: it writes nothing
    assert await queue.redis.zscore(k.alive, "quiet") is None


async def test_a_suspect_is_only_one_whose_connection_on_this_run_of_redis_is_gone(queue: Queue) -> None:
    pool = Pool(queue, heartbeat_interval=0.2, stale_timeout=5)
    presence = pool.runners[0].presence
    client, _ = presence._connection()
    other = Queue(queue.name, url=queue.url)
    try:
        record = await presence._record(client)
        run_id, _, own = record.partition(":")
        assert own == str(await client.client_id())
        other_id = int(await other.redis.client_id())
        suspects = [("open", f"{run_id}:{other_id}"), ("old-run", f"not-{run_id}:99999"), ("none", "")]
        assert await presence._gone(client, suspects) == []
        await other.close()  # its connection closes, as a killed process's would
        await wait_until(lambda: _client_gone(client, other_id), 5, "Redis to drop the closed connection")
        assert await presence._gone(client, suspects) == ["open"]
    finally:
        await other.close()
        await presence.close()


async def _client_gone(client: Redis, client_id: int) -> bool:
    return not await client.client_list(client_id=[str(client_id)])  # redis-py 5.3 wants strings


async def test_a_sigkilled_busy_pool_s_job_runs_elsewhere_within_seconds_by_default(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    """Default settings (stale_timeout 30 s): before crash detection the job waited 30 s."""
    marker = marker_for(queue)
    job = await queue.enqueue("fault.stall_first", args=(marker, 120.0), retries=1)
    assert job is not None
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start(defaults=True)
        b = ws.start(defaults=True)
        await wait_for(lambda: _is(runs(queue, marker), 1), "the job to start")
        killed = time.monotonic()
        owner = (await job.info()).pool_id or ""
        victim, survivor = (a, b) if f":{a.pid}:" in owner else (b, a)
        victim.process.send_signal(signal.SIGKILL)
        result = await job.result(timeout=10)  # 30 s (stale_timeout) without crash detection
        took = time.monotonic() - killed
    assert result == {"run": 2, "pid": survivor.pid}
    assert took < 10
    assert (await job.info()).attempts == 2
    assert "(connection closed, ticks missed)" in survivor.log


async def test_a_dead_idle_pool_never_swallows_new_jobs(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    """Two idle workers, one SIGKILLed, ten jobs enqueued at once: each runs within seconds
    on the live one (before, the ones handed to the dead pool waited for its reaping: 30 s)."""
    with workers(queue, redis_url, tmp_path) as ws:
        a = ws.start(defaults=True)
        b = ws.start(defaults=True)
        await wait_for(lambda: _idle_pools(queue, 2), "both workers to go idle")
        # A pool records its presence connection before its first claim: an idle one is known.
        assert await _present(queue, 2)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(5)
        jobs = [await queue.enqueue("fault.add", args=(i, 1)) for i in range(10)]
        with anyio.fail_after(10):
            results = [await j.result() for j in jobs if j is not None]
    assert results == [i + 1 for i in range(10)]
    for j in jobs:
        assert j is not None and f":{b.pid}:" in ((await j.info()).pool_id or "")


async def test_a_pool_whose_loop_is_blocked_keeps_its_job(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    """No false positive: a loop blocked for 2.5 s keeps its connections, so it is judged by its
    heartbeat only (stale_timeout 30 s) and its job runs once, on it."""
    marker, release = marker_for(queue), queue.keys.prefix + "test:release"
    with workers(queue, redis_url, tmp_path) as ws:
        ws.start(defaults=True)
        ws.start(defaults=True)
        await wait_for(lambda: _idle_pools(queue, 2), "both workers to go idle")
        job = await queue.enqueue("fault.block_first", args=(marker, release))
        assert job is not None
        await wait_for(lambda: _is(runs(queue, marker), 1), "the job to start and block its loop")
        await anyio.sleep(2.5)  # the fault under test: the loop stays blocked this long
        await queue.redis.set(release, 1)
        result = await job.result(timeout=10)
    assert result["run"] == 1
    assert await runs(queue, marker) == 1
    assert all("reaped" not in w.log for w in ws.started)


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _present(queue: Queue, n: int) -> bool:
    return int(await queue.redis.hlen(queue.keys.presence)) >= n


async def _idle_pools(queue: Queue, n: int) -> bool:
    return int(await queue.redis.zcard(queue.keys.idle)) >= n
