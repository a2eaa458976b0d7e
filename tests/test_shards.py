"""Sharded queues (``Queue(name, shards=N)``): one logical queue over N hash slots. Jobs spread
over the shards by id, pools serve every shard fairly, and the queue's methods see the whole
queue. Runs on the session's Redis, and on its local cluster under `make test-cluster`."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path

import anyio
import pytest
from _util import run_pool, wait_for, wait_idle
from _workers import marker_for, runs, workers
from redis.asyncio import Redis
from redis.crc import key_slot

from aiotaskq import JobStatus, Queue
from aiotaskq._shards import MAX_SHARDS, SLOTS, job_shard, key_shard, shard_tags
from aiotaskq.schedule import job_id as tick_job_id
from aiotaskq.testing import LocalCluster

_names = count()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def sharded(redis_url: str) -> AsyncIterator[Queue]:
    q = Queue(f"s{os.getpid()}-{next(_names)}", url=redis_url, shards=3)
    yield q
    await q.close()


def ids_on(q: Queue, shard: int, n: int, stem: str = "j") -> list[str]:
    """``n`` job ids that live in ``shard`` of ``q``."""
    out = []
    for i in count():
        if job_shard(f"{stem}{i}", q.shards) == shard:
            out.append(f"{stem}{i}")
            if len(out) == n:
                return out
    raise AssertionError


async def shard_counts(q: Queue, status: JobStatus) -> list[int]:
    return [(await part.counts())[status] for part in q.parts]


# -- layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 16, MAX_SHARDS])
def test_shard_k_sits_in_the_kth_of_n_equal_slot_ranges(n: int) -> None:
    tags = shard_tags("emails", n)
    assert len(set(tags)) == n
    for k, tag in enumerate(tags):
        assert k * SLOTS // n <= key_slot(tag.encode()) < (k + 1) * SLOTS // n
        assert Queue("emails", shards=n).parts[k].keys.prefix == f"aiotaskq:{{{tag}}}:"


def test_one_shard_is_the_plain_layout_and_the_shard_count_is_part_of_the_tags() -> None:
    assert Queue("emails", shards=1).keys.prefix == "aiotaskq:{emails}:"
    assert Queue("emails", shards=1).parts[0].keys.prefix == "aiotaskq:{emails}:"
    assert not set(shard_tags("emails", 2)) & set(shard_tags("emails", 3))


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1, 2.0, True, "3"])
def test_a_bad_shard_count_is_refused_at_declaration(bad: object) -> None:
    with pytest.raises(ValueError, match="shards: must be an integer from 1 to 256"):
        Queue("emails", shards=bad)  # type: ignore[arg-type]


def test_a_queue_name_that_ends_like_a_shard_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved for the shards"):
        Queue("emails#1/3")
    Queue("emails#1")  # not the ending of a shard's tag


def test_a_tick_job_lives_in_the_shard_of_its_schedule() -> None:
    for key in ("nightly", "a:b:c", "x" * 50):
        assert job_shard(tick_job_id(key, 1_700_000_000_000), 7) == key_shard(key, 7)


# -- jobs -----------------------------------------------------------------------------------------


async def test_jobs_spread_over_the_shards_and_every_one_runs(sharded: Queue) -> None:
    q = sharded

    @q.task
    async def double(x: int) -> int:
        return 2 * x

    one_by_one = [await double.enqueue(i) for i in range(150)]
    many = await double.enqueue_many([(i,) for i in range(150, 300)])
    by_name = await q.enqueue(double.name, args=(300,), job_id="given")
    assert by_name is not None
    jobs = [*one_by_one, *(j for j in many if j is not None), by_name]
    assert len(jobs) == 301
    per_shard = await shard_counts(q, JobStatus.QUEUED)
    assert sum(per_shard) == 301 and min(per_shard) > 60, per_shard  # 100 each, give or take
    assert (await q.counts())[JobStatus.QUEUED] == 301
    assert set(await q.job_ids(JobStatus.QUEUED, limit=1000)) == {j.id for j in jobs}
    assert await q.job("given").status() is JobStatus.QUEUED

    async with run_pool(q, concurrency=20):
        results = [await j.result(timeout=10) for j in jobs]
    assert results == [2 * i for i in range(301)]
    assert (await q.counts())[JobStatus.SUCCEEDED] == 301
    assert min(await shard_counts(q, JobStatus.SUCCEEDED)) > 60


async def test_a_given_job_id_deduplicates_across_the_whole_queue(sharded: Queue) -> None:
    q = sharded
    first = await q.enqueue("t.any", job_id="order-42")
    again = await q.enqueue("t.any", job_id="order-42")
    assert first is not None and again is None
    assert (await q.counts())[JobStatus.QUEUED] == 1
    holder = q.parts[job_shard("order-42", 3)]
    assert await holder.redis.hexists(holder.keys.jobs, "order-42")


async def test_job_handles_find_their_shard_for_info_cancel_and_reschedule(sharded: Queue) -> None:
    q = sharded
    ids = [ids_on(q, k, 1, stem=f"h{k}-")[0] for k in range(3)]
    for job_id in ids:
        assert await q.enqueue("t.any", job_id=job_id, delay=60) is not None
    infos = [await q.job(i).info() for i in ids]
    assert [i.status for i in infos] == [JobStatus.SCHEDULED] * 3
    assert await q.job(ids[0]).reschedule(delay=3600) is True
    later = (await q.job(ids[0]).info()).scheduled_at
    assert later is not None and infos[0].scheduled_at is not None
    assert (later - infos[0].scheduled_at).total_seconds() > 3000
    assert await q.job(ids[1]).cancel() is True
    assert await q.job(ids[1]).status() is JobStatus.CANCELLED
    assert await shard_counts(q, JobStatus.CANCELLED) == [0, 1, 0]
    assert await shard_counts(q, JobStatus.SCHEDULED) == [1, 0, 1]


async def test_job_ids_merge_the_shards_in_order(sharded: Queue) -> None:
    q = sharded
    # Scheduled: by due time, whatever shard each is on.
    for k, delay in ((2, 10), (0, 20), (1, 30)):
        await q.enqueue("t.any", job_id=ids_on(q, k, 1, stem=f"d{delay}-")[0], delay=delay)
    due_order = await q.job_ids(JobStatus.SCHEDULED)
    assert [job_shard(i, 3) for i in due_order] == [2, 0, 1]
    # Queued: the higher priority first across shards, then each shard's own order.
    low = ids_on(q, 0, 3, stem="low")
    high = ids_on(q, 1, 2, stem="high") + ids_on(q, 2, 1, stem="high")
    for job_id in low:
        await q.enqueue("t.any", job_id=job_id, priority=0)
    for job_id in high:
        await q.enqueue("t.any", job_id=job_id, priority=5)
    queued = await q.job_ids(JobStatus.QUEUED)
    assert set(queued[:3]) == set(high) and queued[3:] == low
    assert len(await q.job_ids(JobStatus.QUEUED, limit=4)) == 4
    assert [x for o in (0, 2, 4) for x in await q.job_ids(JobStatus.QUEUED, limit=2, offset=o)] == queued
    assert await q.job_ids(JobStatus.SCHEDULED, limit=2, offset=1) == due_order[1:]


async def test_requeue_failed_and_purge_cover_every_shard(sharded: Queue) -> None:
    q = sharded
    attempts = Counter[str]()

    @q.task
    async def flaky(tag: str) -> str:
        attempts[tag] += 1
        if attempts[tag] == 1:
            raise RuntimeError("first run fails")
        return tag

    jobs = [await flaky.options(job_id=i).enqueue(i) for k in range(3) for i in ids_on(q, k, 4, stem=f"f{k}-")]
    async with run_pool(q, concurrency=10):
        await wait_for(lambda: _failed(q, 12), 10, "12 failures")
        assert await shard_counts(q, JobStatus.FAILED) == [4, 4, 4]
        one = [j.id for j in jobs if j is not None][:2]
        assert await q.requeue_failed(one) == 2
        assert await q.requeue_failed() == 10
        await wait_for(lambda: _succeeded(q, 12), 10, "every job to succeed on its second run")
    assert await q.purge(JobStatus.SUCCEEDED) == 12
    assert await q.counts() == dict.fromkeys(JobStatus, 0)


async def _failed(q: Queue, n: int) -> bool:
    return (await q.counts())[JobStatus.FAILED] == n


async def _succeeded(q: Queue, n: int) -> bool:
    return (await q.counts())[JobStatus.SUCCEEDED] == n


# -- pools ----------------------------------------------------------------------------------------


async def test_a_pool_serves_every_shard_and_an_idle_pool_wakes_for_any(sharded: Queue) -> None:
    q = sharded

    @q.task
    async def echo(x: str) -> str:
        return x

    async with run_pool(q, idle=True) as pool:
        assert len(pool.runners) == 3  # one per shard, each parked in its shard's idle set
        await wait_idle(pool)
        for k in range(3):
            job_id = ids_on(q, k, 1, stem=f"w{k}-")[0]
            job = await echo.options(job_id=job_id).enqueue(job_id)
            assert job is not None
            assert await job.result(timeout=3) == job_id  # handed over at once: poll_interval is 0.05 s


async def test_a_pool_claims_from_every_shard_in_turn(sharded: Queue) -> None:
    """With a backlog on every shard, the first jobs started come from all of them, not one shard first."""
    q = sharded
    started: list[int] = []

    @q.task
    async def note(shard: int) -> None:
        started.append(shard)
        await anyio.sleep(0.002)

    for k in range(3):  # shard k holds the jobs that say k
        for job_id in ids_on(q, k, 200, stem=f"b{k}-"):
            await note.options(job_id=job_id).enqueue(k)
    assert await shard_counts(q, JobStatus.QUEUED) == [200, 200, 200]
    async with run_pool(q, concurrency=4, batch_size=4):
        await wait_for(lambda: len(started) >= 90, 10, "90 jobs to start")
    first = Counter(started[:90])
    assert min(first[k] for k in range(3)) >= 15, first


async def test_schedules_live_in_one_shard_each_and_fire_once_per_tick(sharded: Queue) -> None:
    q = sharded
    ran: list[str] = []

    @q.task(every=0.2)
    async def beat() -> None:
        ran.append("beat")

    @q.task
    async def hello(who: str) -> None:
        ran.append(who)

    keys = [f"k{i}" for i in range(6)]
    for key in keys:
        await q.schedule(key, hello, every=3600, args=(key,))
    listed = await q.schedules()
    assert sorted(s.key for s in listed) == sorted(keys)  # beat is declared by pools at start
    for key in keys:
        holder = q.parts[key_shard(key, 3)]
        assert await holder.redis.hexists(holder.keys.schedules, key)
        assert sum([await p.redis.hexists(p.keys.schedules, key) for p in q.parts]) == 1
    assert await q.unschedule("k0") is True
    assert await q.unschedule("k0") is False

    async with run_pool(q), run_pool(q):  # two pools, each with a scheduler on every shard
        await wait_for(lambda: ran.count("beat") >= 4, 10, "four ticks of beat")
    beats = await q.job_ids(JobStatus.SUCCEEDED, limit=1000)
    ticks = [i for i in beats if i.startswith("schedule:")]
    assert len(ticks) == len(set(ticks))
    assert ran.count("beat") == len([i for i in ticks if i.startswith(f"schedule:{beat.name}:")])
    assert {s.key for s in await q.schedules()} == {beat.name, *keys[1:]}


async def test_a_sigkilled_pool_s_jobs_on_every_shard_run_elsewhere(
    sharded: Queue, redis_url: str, tmp_path: Path
) -> None:
    q = sharded
    marker = marker_for(q)
    jobs = []
    for k in range(3):
        job_id = ids_on(q, k, 1, stem=f"kill{k}-")[0]
        jobs.append(await q.enqueue("fault.stall_first", args=(f"{marker}:{k}", 60.0), job_id=job_id, retries=1))
    with workers(q, redis_url, tmp_path) as ws:
        a = ws.start()
        for k in range(3):
            await wait_for(lambda: _started(q, f"{marker}:{k}"), 10, f"the job on shard {k} to start")  # noqa: B023
        a.kill()
        assert a.process.returncode == -signal.SIGKILL
        b = ws.start()
        results = [await j.result(timeout=15) for j in jobs if j is not None]
    assert [r["run"] for r in results] == [2, 2, 2]
    assert {r["pid"] for r in results} == {b.pid}
    assert b.log.count("reaped 1 dead pool(s): 1 job(s) requeued") == 3  # the reaper of each shard


async def _started(q: Queue, marker: str) -> bool:
    return await runs(q, marker) == 1


async def test_the_cli_s_info_counts_every_shard(sharded: Queue, redis_url: str) -> None:
    q = sharded
    for k in range(3):
        for job_id in ids_on(q, k, k + 1, stem=f"cli{k}-"):  # 1, 2 and 3 jobs on the shards
            await q.enqueue("fault.add", args=(1, 2), job_id=job_id, delay=3600)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAULTAPP_QUEUE": q.name,
           "FAULTAPP_SHARDS": "3", "AIOTASKQ_REDIS_URL": redis_url}  # fmt: skip
    async with run_pool(q) as pool:
        await wait_idle(pool)
        with anyio.fail_after(20):
            out = await anyio.run_process(
                [sys.executable, "-m", "aiotaskq", "info", "tests.apps.faultapp:queue", "--json"], env=env, check=False
            )
            text = await anyio.run_process(
                [sys.executable, "-m", "aiotaskq", "info", "tests.apps.faultapp:queue"], env=env, check=False
            )
    assert out.returncode == 0, out.stderr
    [report] = json.loads(out.stdout)
    assert report["shards"] == 3
    assert report["counts"]["scheduled"] == 6
    assert [p["id"] for p in report["pools"]] == [pool.pool_ids[0]]  # one pool, listed once
    assert f"queue {q.name!r} in 3 shards at" in text.stdout.decode()


# -- cluster --------------------------------------------------------------------------------------


async def test_three_shards_sit_on_the_three_masters_and_share_the_load(local_cluster: LocalCluster) -> None:
    q = Queue(f"spread{os.getpid()}-{next(_names)}", url=local_cluster.url, shards=3)

    @q.task
    async def noop(i: int) -> int:
        return i

    try:
        masters = [local_cluster.master_port_for_slot(key_slot(p.keys.prefix.encode())) for p in q.parts]
        assert len(set(masters)) == 3, masters
        jobs = await noop.enqueue_many([(i,) for i in range(300)])
        async with run_pool(q, concurrency=20):
            assert [await j.result(timeout=10) for j in jobs if j is not None] == list(range(300))
        for part, port in zip(q.parts, masters, strict=True):
            node = Redis.from_url(local_cluster.node(port).url)  # the master itself, no redirection
            try:
                ended = await node.zcard(part.keys.ended("succeeded"))
            finally:
                await node.aclose()
            assert ended > 60, (port, ended)
    finally:
        await q.close()
