"""The throughput history the scripts keep for the dashboard: jobs per 10 s slot and counter
(enqueued, succeeded, failed, retried, cancelled), one INCRBY per counter per script call."""

from __future__ import annotations

from collections import Counter

from _util import must, run_pool, wait_for

from aiotaskq import JobStatus, Queue
from aiotaskq._browse import SLOT_SECONDS, rates


async def test_every_outcome_is_counted_in_its_10s_slot_and_expires(queue: Queue) -> None:
    runs: Counter[int] = Counter()

    @queue.task(retries=1)
    async def work(n: int) -> int:
        runs[n] += 1
        if n % 3 == 0:
            raise RuntimeError("every third fails, twice")
        return n

    await work.enqueue_many([(n,) for n in range(30)])
    later = must(await queue.enqueue(work.name, args=(99,), delay=3600))
    assert await later.cancel()
    async with run_pool(queue, concurrency=10):

        async def ended() -> bool:
            c = await queue.counts()
            return c[JobStatus.SUCCEEDED] == 20 and c[JobStatus.FAILED] == 10

        await wait_for(ended, 10, "every job to end")
    r = await rates(queue, seconds=600)
    assert len(r.counts["succeeded"]) == 600 // SLOT_SECONDS
    assert {c: sum(v) for c, v in r.counts.items()} == {
        "enqueued": 31, "succeeded": 20, "failed": 10, "retried": 10, "cancelled": 1,
    }  # fmt: skip
    assert sum(r.counts["succeeded"][-2:]) == 20  # in the last slot or two: just now
    keys = [k async for k in queue.redis.scan_iter(match=queue.keys.prefix + "rate:*")]
    ttls = [await queue.redis.pttl(k) for k in keys]
    assert ttls and all(7_000_000 < t <= 7_200_000 for t in ttls), ttls  # two hours, set once per slot


async def test_the_counts_cost_a_command_per_batch_not_per_job(queue: Queue) -> None:
    @queue.task
    async def noop() -> None:
        return None

    async def incrby_calls() -> int:
        stats = await queue.redis.info("commandstats")
        return int(stats.get("cmdstat_incrby", {}).get("calls", 0))

    before = await incrby_calls()
    await noop.enqueue_many([()] * 2000)  # 20 enqueue.lua calls of 100 jobs
    async with run_pool(queue, concurrency=100):
        await wait_for(lambda: _succeeded(queue, 2000), 20, "the drain")
    calls = await incrby_calls() - before
    assert 20 <= calls < 400, calls  # enqueue calls + outcome batches, far fewer than 4,000 jobs' worth
    assert sum((await rates(queue, seconds=60)).counts["succeeded"]) == 2000


async def _succeeded(queue: Queue, n: int) -> bool:
    return (await queue.counts())[JobStatus.SUCCEEDED] == n


async def test_a_sharded_queue_s_rates_sum_its_shards(redis_url: str) -> None:
    q = Queue("rates-sharded", url=redis_url, shards=3)
    try:
        await q.purge(JobStatus.QUEUED)
        for i in range(12):
            await q.enqueue("t.any", job_id=f"r{i}")
        per_shard = [sum((await rates(p, seconds=60)).counts["enqueued"]) for p in q.parts]
        assert sum(per_shard) >= 12 and sum(1 for n in per_shard if n) >= 2
        assert sum((await rates(q, seconds=60)).counts["enqueued"]) == sum(per_shard)
    finally:
        await q.purge(JobStatus.QUEUED)
        await q.close()
