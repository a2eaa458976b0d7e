"""``@queue.task(key_concurrency=K)`` with ``options(key=...)``: at most K running jobs per key
across all pools, other keys in parallel, keys served in turn, FIFO within a key; a pool that
dies frees its keys' slots when it is reaped."""

from __future__ import annotations

import itertools
import signal
from collections import defaultdict
from pathlib import Path

import anyio
import pytest
from _util import must, run_pool, wait_for
from _workers import workers

from aiotaskq import JobStatus, Queue
from aiotaskq._display import job_rows


class Running:
    """Counts the jobs running per key, and the most ever seen at once."""

    def __init__(self) -> None:
        self.now: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self.order: dict[str, list[int]] = defaultdict(list)
        self.most_overall = 0  # jobs of all keys running at once

    async def run(self, key: str, n: int, hold: float) -> int:
        self.now[key] += 1
        self.most[key] = max(self.most[key], self.now[key])
        self.most_overall = max(self.most_overall, sum(self.now.values()))
        self.order[key].append(n)
        try:
            await anyio.sleep(hold)
        finally:
            self.now[key] -= 1
        return n


async def test_at_most_k_run_per_key_across_pools_and_other_keys_run_in_parallel(queue: Queue) -> None:
    seen = Running()

    @queue.task(key_concurrency=2)
    async def sync_account(key: str, n: int) -> int:
        return await seen.run(key, n, 0.05)

    jobs = []
    for n in range(12):
        for key in ("acct-1", "acct-2", "acct-3"):
            jobs.append(must(await sync_account.options(key=key).enqueue(key, n)))
    async with run_pool(queue, concurrency=8), run_pool(queue, concurrency=8):
        assert sorted([await j.result(timeout=20) for j in jobs]) == sorted(n for n in range(12) for _ in range(3))
    assert dict(seen.most) == {"acct-1": 2, "acct-2": 2, "acct-3": 2}  # the limit, and reached
    assert seen.most_overall > 2  # other keys ran side by side
    for key in ("acct-1", "acct-2", "acct-3"):  # FIFO within a key (two at a time: pairs may swap)
        assert all(abs(i - n) <= 1 for i, n in enumerate(seen.order[key])), seen.order[key]
    assert await queue.redis.keys(queue.keys.prefix + "running:*") == []  # every slot given back
    assert await queue.redis.keys(queue.keys.prefix + "held*") == []


async def test_a_key_with_many_waiting_jobs_does_not_starve_one_with_one(queue: Queue) -> None:
    seen = Running()
    started: list[str] = []

    @queue.task(key_concurrency=1)
    async def per_user(key: str, n: int) -> int:
        started.append(key)
        return await seen.run(key, n, 0.01)

    await per_user.options(key="big").enqueue_many([("big", n) for n in range(2000)])
    small = must(await per_user.options(key="small").enqueue("small", 0))  # behind 2,000 of "big"
    async with run_pool(queue, concurrency=4):
        await small.result(timeout=10)
        assert started.index("small") < 10, started.index("small")  # served in its turn, not after "big"
        assert (await queue.counts())[JobStatus.QUEUED] > 1500  # held jobs count as queued
    assert seen.most["big"] == 1


async def test_a_job_waiting_for_its_key_does_not_start_before_a_higher_priority_one(queue: Queue) -> None:
    """When its key frees, a job that waited for it starts in its priority's turn: a job of
    priority 10 queued meanwhile goes first (jobs of one key still start in their order)."""
    started: list[str] = []
    go = {name: anyio.Event() for name in ("first", "filler")}

    @queue.task(key_concurrency=1)
    async def locked(name: str) -> None:
        started.append(name)
        if name in go:
            await go[name].wait()

    @queue.task
    async def plain(name: str) -> None:
        started.append(name)
        if name in go:
            await go[name].wait()

    gate = queue.keys.prefix + "held:\0" + locked.name + "\0acct"
    async with run_pool(queue, concurrency=2, poll_interval=0.05):
        first = must(await locked.options(key="acct").enqueue("first"))
        await wait_for(lambda: _is_in(started, "first"), 5, "the key's first job to start")
        second = must(await locked.options(key="acct").enqueue("second"))
        await wait_for(lambda: _held(queue, gate, 1), 5, "the key's second job to wait at its key")
        filler = must(await plain.enqueue("filler"))
        await wait_for(lambda: _is_in(started, "filler"), 5, "the other slot to be taken")
        urgent = must(await plain.options(priority=10).enqueue("urgent"))
        assert await urgent.status() is JobStatus.QUEUED  # no slot free
        await queue.pause()  # so that the next claim comes once the key is free (its end written)
        go["first"].set()  # one slot frees, and the key with it
        await first.result(timeout=10)
        await queue.resume()  # one claim, one free slot: the urgent job, or the one of the key?
        for job in (urgent, second):
            await job.result(timeout=10)
        go["filler"].set()
        await filler.result(timeout=10)
    assert started == ["first", "filler", "urgent", "second"], started


async def _is_in(items: list[str], item: str) -> bool:
    return item in items


async def _held(queue: Queue, key: str, n: int) -> bool:
    return int(await queue.redis.llen(key)) == n


async def test_retries_and_cancels_give_the_slot_back(queue: Queue) -> None:
    tries: list[int] = []

    @queue.task(key_concurrency=1, retries=2, backoff=(0.01, 0.01))
    async def flaky(n: int) -> int:
        tries.append(n)
        if n == 0 and tries.count(0) < 3:
            raise RuntimeError("not yet")
        return n

    @queue.task(key_concurrency=1)
    async def slow(n: int) -> int:
        await anyio.sleep(30)
        return n

    first = must(await flaky.options(key="k").enqueue(0))
    second = must(await flaky.options(key="k").enqueue(1))
    stuck = must(await slow.options(key="s").enqueue(0))
    behind = must(await slow.options(key="s").enqueue(1))
    async with run_pool(queue, concurrency=4):
        assert await first.result(timeout=10) == 0
        assert await second.result(timeout=10) == 1
        await wait_for(lambda: _status(stuck, JobStatus.ACTIVE), 5, "the slow job to start")
        assert await behind.status() is JobStatus.QUEUED  # its key is full
        assert await behind.cancel()  # a waiting keyed job can be cancelled
        assert await behind.status() is JobStatus.CANCELLED
        third = must(await slow.options(key="s").enqueue(2))
        assert await stuck.cancel()  # the running one: its slot goes to the next of its key
        await wait_for(lambda: _status(third, JobStatus.ACTIVE), 5, "the next job of the key to start")
        assert await third.cancel()
    assert tries.count(0) == 3


async def test_the_key_shows_in_job_info_and_purge_clears_waiting_ones(queue: Queue) -> None:
    @queue.task(key_concurrency=1)
    async def one(n: int) -> int:
        await anyio.sleep(30)
        return n

    jobs = [must(await one.options(key="acct-9").enqueue(n)) for n in range(3)]
    async with run_pool(queue, concurrency=3):
        await wait_for(lambda: _status(jobs[0], JobStatus.ACTIVE), 5, "the first to start")
        info = await jobs[1].info()
        assert info is not None and info.key == "acct-9" and info.status is JobStatus.QUEUED
        assert ("key", "acct-9") in job_rows(info, 0.0)
        assert set(await queue.job_ids(JobStatus.QUEUED)) == {jobs[1].id, jobs[2].id}
        assert await queue.purge(JobStatus.QUEUED) == 2
        assert await queue.redis.keys(queue.keys.prefix + "held:*") == []
        assert await jobs[0].cancel()


async def test_bad_keys_and_limits_raise_at_the_point_of_the_mistake(queue: Queue) -> None:
    @queue.task
    async def plain() -> None:
        return None

    @queue.task(key_concurrency=1)
    async def keyed() -> None:
        return None

    with pytest.raises(ValueError, match="declared without key_concurrency"):
        plain.options(key="a")
    for bad in ("", 3, None.__class__):
        with pytest.raises(ValueError, match="key: must be a non-empty string"):
            keyed.options(key=bad)
    for k in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="key_concurrency"):
            queue.task(name=f"bad{k!r}", key_concurrency=k)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key: must be a non-empty string"):
        await queue.enqueue("keyed-by-name", key="")
    assert await queue.counts() == {s: 0 for s in JobStatus}


async def test_keyed_jobs_of_one_key_share_a_shard(redis_url: str, request: pytest.FixtureRequest) -> None:
    """On a sharded queue a key's jobs live in its key's shard, so its running jobs are
    counted in one place; a job id given for another shard is refused."""
    q = Queue(f"keys-shards-{request.node.name[:20]}", url=redis_url, shards=3)
    seen = Running()

    @q.task(key_concurrency=1)
    async def per_key(key: str, n: int) -> int:
        return await seen.run(key, n, 0.02)

    try:
        jobs = [must(await per_key.options(key=f"k{n % 4}").enqueue(f"k{n % 4}", n)) for n in range(40)]
        shards = {q._shard_of(j.id).keys.prefix for j in jobs if (j.id, "k1")}
        assert len(shards) >= 2  # the keys spread over shards...
        for key in ("k0", "k1", "k2", "k3"):  # ...each key's jobs in one
            assert len({q._shard_of(j.id).keys.prefix for n, j in enumerate(jobs) if f"k{n % 4}" == key}) == 1
        async with run_pool(q, concurrency=8):
            assert sorted([await j.result(timeout=10) for j in jobs]) == list(range(40))
        assert max(seen.most.values()) == 1
        other = next(f"id{i}" for i in range(100) if q._shard_of(f"id{i}") is not q._shard_of(jobs[0].id))
        with pytest.raises(ValueError, match="must live in shard"):
            await per_key.options(key="k0", job_id=other).enqueue("k0", 0)
    finally:
        await q.purge(JobStatus.SUCCEEDED)
        await q.close()


async def test_a_killed_worker_frees_its_keys_slot_when_reaped(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    """SIGKILL the worker that runs a key's only slot: once it is reaped, its job runs again
    and the key's waiting job after it, each once, on the other worker; nothing is lost."""
    log = queue.keys.prefix + "test:keyed"
    with workers(queue, redis_url, tmp_path) as ws:
        victim = ws.start()
        first = must(await queue.enqueue("fault.keyed", args=(log, 0, 30.0), key="acct"))
        await wait_for(lambda: _started(queue, log, 1), 10, "the first job to start on the victim")
        second = must(await queue.enqueue("fault.keyed", args=(log, 1, 0.0), key="acct"))
        other = must(await queue.enqueue("fault.keyed", args=(log, 2, 0.0), key="other"))
        await wait_for(lambda: _status(other, JobStatus.SUCCEEDED), 10, "another key's job to run meanwhile")
        assert await second.status() is JobStatus.QUEUED  # its key is held by the running job
        victim.signal(signal.SIGKILL)
        victim.process.wait(5)
        ws.start()
        assert await second.result(timeout=20) == 1
        assert await first.result(timeout=20) == 0  # requeued by the reaper: its second attempt
        info = await first.info()
        assert info is not None and info.attempts == 2
    raw: list[bytes] = await queue.redis.lrange(log, 0, -1)  # type: ignore[assignment]
    entries = [x.decode() for x in raw]
    assert entries.count("start:0") == 2 and entries.count("end:0") == 1  # the killed attempt never ended
    assert entries.count("start:1") == 1 and entries.count("end:1") == 1
    for a, b in itertools.pairwise(entries):  # one at a time for the key: each start of it follows an end
        if b in ("start:0", "start:1") and a.startswith("start:") and a != "start:2":
            raise AssertionError(f"two jobs of one key overlapped: {entries}")
    assert await queue.redis.keys(queue.keys.prefix + "running:*") == []


async def _started(queue: Queue, log: str, n: int) -> bool:
    return int(await queue.redis.llen(log)) >= n


async def _status(job: object, status: JobStatus) -> bool:
    from aiotaskq import Job

    assert isinstance(job, Job)
    return await job.status() is status


async def test_the_docs_example_runs_one_job_at_a_time_per_account(redis_url: str) -> None:
    from docs.examples import keys

    assert await keys.main(redis_url) == {"acct-1": 1, "acct-2": 1, "acct-3": 1}
