"""``@queue.task(rate_limit="N/s")``: at most N starts of the task per window of the period across
all pools; its waiting jobs never hold up other tasks' jobs; pools do not spin while it waits."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest
from _util import must, run_pool, wait_for

from aiotaskq import JobStatus, Queue
from aiotaskq.task import parse_rate_limit


async def _now_ms(queue: Queue) -> int:
    sec, usec = await queue.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def test_starts_stay_within_the_limit_across_pools_and_other_tasks_run_at_once(queue: Queue) -> None:
    starts: list[int] = []
    quick_done: list[int] = []

    @queue.task(rate_limit="10/s")
    async def call_api(n: int) -> int:
        starts.append(await _now_ms(queue))
        return n

    @queue.task
    async def quick(n: int) -> int:
        quick_done.append(n)
        return n

    limited = await call_api.enqueue_many([(n,) for n in range(30)])  # at the head of the queue
    others = await quick.enqueue_many([(n,) for n in range(20)])  # behind them
    async with run_pool(queue, concurrency=10), run_pool(queue, concurrency=10):
        await wait_for(lambda: len(quick_done) == 20, 3, "the other task's jobs (no head-of-line blocking)")
        assert len(starts) <= 20  # the limited ones still wait for their windows
        counts = await queue.counts()  # held jobs count as queued (a claimed one may not have appended yet)
        assert counts[JobStatus.QUEUED] + counts[JobStatus.ACTIVE] + len(starts) >= 30
        assert counts[JobStatus.QUEUED] >= 5
        assert [await j.result(timeout=10) for j in limited if j] == list(range(30))
    per_window = Counter(ms // 1000 for ms in starts)
    assert max(per_window.values()) <= 10, per_window  # two pools, one limit
    assert len(per_window) >= 3
    assert [await j.result(timeout=1) for j in others if j] == list(range(20))


async def test_a_task_both_limited_and_keyed_stays_within_both(queue: Queue) -> None:
    """A job that waits for its key's slot has not started: it takes its start from the window
    it starts in. (Ten slow jobs of one key and ten of other keys, limit 10/s: the key's later
    jobs must not start on top of the next window's ten.)"""
    starts: list[int] = []
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()

    @queue.task(rate_limit="10/s", key_concurrency=2)
    async def sync_account(account: str, seconds: float) -> None:
        starts.append(await _now_ms(queue))
        running[account] += 1
        most[account] = max(most[account], running[account])
        await anyio.sleep(seconds)
        running[account] -= 1

    jobs = [must(await sync_account.options(key="big").enqueue("big", 0.2)) for _ in range(10)]
    jobs += [must(await sync_account.options(key=f"small-{n}").enqueue(f"small-{n}", 0.0)) for n in range(10)]
    async with run_pool(queue, concurrency=20), run_pool(queue, concurrency=20):
        for j in jobs:
            await j.result(timeout=15)
    per_window = Counter(ms // 1000 for ms in starts)
    assert len(starts) == 20 and max(per_window.values()) <= 10, sorted(per_window.items())
    assert most["big"] == 2, most


async def test_keys_that_fill_and_a_window_that_runs_out_together_leave_no_job_behind(queue: Queue) -> None:
    """One slot per key and 3 starts a second for 3 keys of 4 jobs, over two pools: every job
    runs, never two of one key at once, never more than 3 starts in a window."""
    starts: list[int] = []
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()

    @queue.task(rate_limit="3/s", key_concurrency=1)
    async def post(account: str) -> None:
        starts.append(await _now_ms(queue))
        running[account] += 1
        most[account] = max(most[account], running[account])
        await anyio.sleep(0.05)
        running[account] -= 1

    jobs = [must(await post.options(key=a).enqueue(a)) for _ in range(4) for a in "abc"]
    async with run_pool(queue, concurrency=5), run_pool(queue, concurrency=5):
        for j in jobs:
            await j.result(timeout=15)
    per_window = Counter(ms // 1000 for ms in starts)
    assert len(starts) == 12 and max(per_window.values()) <= 3, sorted(per_window.items())
    assert set(most.values()) == {1}
    assert await queue.redis.zcard(queue.keys.prefix + "held") == 0  # nothing left waiting


async def test_pools_wait_for_the_next_window_without_spinning(queue: Queue) -> None:
    @queue.task(rate_limit="2/s")
    async def slow_api() -> None:
        return None

    async def claims() -> int:
        stats = await queue.redis.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    jobs = [must(await slow_api.enqueue()) for _ in range(6)]  # three windows' worth
    async with run_pool(queue, concurrency=4, poll_interval=5):
        await wait_for(lambda: _status(jobs[1], JobStatus.SUCCEEDED), 5, "the first window's two")
        before = await claims()
        t0 = anyio.current_time()
        for j in jobs:
            await j.result(timeout=10)
        took = anyio.current_time() - t0
    calls = await claims() - before
    assert took >= 1.0  # two more windows
    assert calls < 60, calls  # a claim per window opening (and the outcomes), not a busy loop


async def _status(job: object, status: JobStatus) -> bool:
    from aiotaskq import Job

    assert isinstance(job, Job)
    return await job.status() is status


async def test_a_held_job_can_be_cancelled_and_a_purge_clears_them(queue: Queue) -> None:
    @queue.task(rate_limit="1/h")
    async def rare(n: int) -> int:
        return n

    jobs = [must(await rare.enqueue(n)) for n in range(4)]
    async with run_pool(queue):
        assert await jobs[0].result(timeout=5) == 0  # the hour's one start

        async def held() -> bool:
            return bool(await queue.redis.llen(queue.keys.held_list(rare.name)) == 3)

        await wait_for(held, 5, "the other three to be held")
    assert (await queue.counts())[JobStatus.QUEUED] == 3
    assert await queue.job_ids(JobStatus.QUEUED) == [j.id for j in jobs[1:]]
    assert await jobs[1].cancel()
    assert await jobs[1].status() is JobStatus.CANCELLED
    assert await queue.redis.llen(queue.keys.held_list(rare.name)) == 2
    assert await queue.purge(JobStatus.QUEUED) == 2
    assert (await queue.counts())[JobStatus.QUEUED] == 0
    assert await queue.redis.zcard(queue.keys.held) == 0


async def test_a_limited_job_is_not_handed_to_an_idle_pool_past_its_limit(queue: Queue) -> None:
    @queue.task(rate_limit="1/h")
    async def rare(n: int) -> int:
        return n

    async with run_pool(queue, idle=True):
        first = must(await rare.enqueue(1))
        assert await first.result(timeout=5) == 1
        second = must(await rare.enqueue(2))

        async def held() -> bool:
            return bool(await queue.redis.llen(queue.keys.held_list(rare.name)) == 1)

        await wait_for(held, 5, "the second to be held, not run")
        assert await second.status() is JobStatus.QUEUED


@pytest.mark.parametrize("bad", ["10", "0/s", "-1/s", "ten/s", "10/d", "10/ s x", 10])
def test_a_bad_rate_limit_is_refused_at_declaration(bad: object) -> None:
    q = Queue("limits")
    with pytest.raises(ValueError, match=r"^rate_limit: expected 'N/s', 'N/m' or 'N/h'"):

        @q.task(rate_limit=bad)  # type: ignore[call-overload, untyped-decorator]
        async def t() -> None: ...


def test_the_periods() -> None:
    assert parse_rate_limit("100/s") == (100, 1000)
    assert parse_rate_limit("30/m") == (30, 60_000)
    assert parse_rate_limit("5/h") == (5, 3_600_000)
    assert parse_rate_limit(None) is None


async def test_the_docs_example_spreads_the_limited_calls_over_windows(redis_url: str) -> None:
    from docs.examples import rate_limits

    starts, sent = await rate_limits.main(redis_url)
    assert sent == ["receipt 0 sent", "receipt 1 sent", "receipt 2 sent"]
    per_second = Counter(int(t) for t in starts)
    assert len(starts) == 10 and max(per_second.values()) <= 5 and len(per_second) >= 2, per_second
