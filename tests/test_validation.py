"""Bad time values and limits fail where they are given, as a ValueError naming the
parameter, and nothing is stored: delays, due times, timeouts, keep times, Retry delays."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from _util import must, queue_keys, run_pool

from aiotaskq import KEEP_FOREVER, JobStatus, Queue, Retry


def short(value: Any) -> str:
    return repr(value)[:24]


ABSURD_DELAYS: list[Any] = [
    1e12, 10**400, math.inf, -math.inf, math.nan, -1, timedelta.max, timedelta(days=365 * 101), "5", True, object,
]  # fmt: skip


@pytest.mark.parametrize("delay", ABSURD_DELAYS, ids=short)
async def test_absurd_delays_raise_at_enqueue_and_store_nothing(queue: Queue, delay: Any) -> None:
    @queue.task(name="t")
    async def t() -> None: ...

    with pytest.raises(ValueError, match=r"^delay: must be"):
        await t.options(delay=delay).enqueue()
    with pytest.raises(ValueError, match=r"^delay: must be"):
        await queue.enqueue("t", delay=delay)
    assert await queue_keys(queue) == []


async def test_the_longest_delay_is_100_years_and_info_shows_it(queue: Queue) -> None:
    @queue.task(name="t")
    async def t() -> None: ...

    with pytest.raises(ValueError, match=r"at most 3155760000 seconds \(100 years\), got 3155760001"):
        await t.options(delay=3_155_760_001).enqueue()
    job = must(await t.options(delay=3_155_760_000).enqueue())
    info = await job.info()  # used to raise "year 33715 is out of range" for delay=1e12
    assert info.status is JobStatus.SCHEDULED and info.scheduled_at is not None
    assert 2120 <= info.scheduled_at.year <= 2130


@pytest.mark.parametrize(
    "at",
    [datetime.max.replace(tzinfo=UTC), datetime.now(UTC) + timedelta(days=365 * 101),
     datetime(9999, 1, 1, tzinfo=timezone(timedelta(hours=-23)))],
    ids=short,
)  # fmt: skip
async def test_due_times_beyond_100_years_raise(queue: Queue, at: datetime) -> None:
    @queue.task(name="t")
    async def t() -> None: ...

    with pytest.raises(ValueError, match=r"^at: must be at most .* from now"):
        await t.options(at=at).enqueue()
    assert await queue_keys(queue) == []


@pytest.mark.parametrize("at", [datetime.min.replace(tzinfo=UTC), datetime(1900, 1, 1, tzinfo=UTC)], ids=short)
async def test_due_times_long_past_mean_now(queue: Queue, at: datetime) -> None:
    @queue.task(name="t")
    async def t() -> str:
        return "ran"

    async with run_pool(queue):
        job = must(await t.options(at=at).enqueue())
        assert await job.result(timeout=5) == "ran"
        info = await job.info()
        assert info.scheduled_at is not None and info.scheduled_at.year < 2000


@pytest.mark.parametrize("timeout", [math.nan, math.inf, 0, -1, True, "5", 1e12, 10**400], ids=short)
async def test_bad_timeouts_raise_at_declaration_and_at_enqueue(queue: Queue, timeout: Any) -> None:
    with pytest.raises(ValueError, match=r"^timeout: must be"):
        queue.task(name="declared", timeout=timeout)(_noop)

    @queue.task(name="t")
    async def t() -> None: ...

    with pytest.raises(ValueError, match=r"^timeout: must be"):
        await t.options(timeout=timeout).enqueue()
    with pytest.raises(ValueError, match=r"^timeout: must be"):
        await queue.enqueue("t", timeout=timeout)
    assert await queue_keys(queue) == []


async def _noop() -> None: ...


@pytest.mark.parametrize("keep", [-1, -math.inf, math.nan, "60", True, 1e12, 10**400], ids=short)
def test_bad_keep_results_raise_at_declaration(keep: Any) -> None:
    with pytest.raises(ValueError, match=r"^keep_result: must be .*KEEP_FOREVER"):
        Queue("q", keep_result=keep)
    with pytest.raises(ValueError, match=r"^keep_result: must be .*KEEP_FOREVER"):
        Queue("q").task(name="t", keep_result=keep)(_noop)


def test_keep_forever_is_infinity_and_accepted_everywhere() -> None:
    assert math.inf == KEEP_FOREVER
    q = Queue("q", keep_result=KEEP_FOREVER)
    t = q.task(name="t", keep_result=math.inf)(_noop)
    assert q._keep_ms(None) == -1 and q._keep_ms(t) == -1
    z = q.task(name="z", keep_result=0)(_noop)
    assert q._keep_ms(z) == 0


@pytest.mark.parametrize("name", ["max_payload_bytes", "max_result_bytes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"], ids=short)
def test_bad_byte_limits_raise(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: must be an int > 0"):
        Queue("q", **{name: value})


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1, 1e12, "1"], ids=short)
def test_retry_with_a_bad_delay_raises(delay: Any) -> None:
    with pytest.raises(ValueError, match=r"^delay: must be"):
        Retry(delay=delay)


async def _stored(queue: Queue, job_id: str) -> tuple[Any, ...]:
    """All Redis holds of a job: record, active entry, ended record, due time."""
    r, k = queue.redis, queue.keys
    return (
        await r.hget(k.jobs, job_id),
        await r.hget(k.active, job_id),
        await r.get(k.job(job_id)),
        await r.zscore(k.scheduled, job_id),
    )


async def test_reschedule_with_a_bad_delay_or_due_time_raises_and_changes_nothing(queue: Queue) -> None:
    @queue.task(name="t")
    async def t() -> None: ...

    job = must(await t.options(delay=60).enqueue())
    before = await _stored(queue, job.id)
    assert before[0] is not None  # the scheduled job's record
    for delay in (1e12, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^delay: must be"):
            await job.reschedule(delay=delay)
    with pytest.raises(ValueError, match=r"^at: must be at most"):
        await job.reschedule(at=datetime.max.replace(tzinfo=UTC))
    assert await _stored(queue, job.id) == before


@pytest.mark.parametrize("priority", [1.5, True, "1", None.__class__, 10**6], ids=short)
async def test_bad_priorities_raise(queue: Queue, priority: Any) -> None:
    with pytest.raises(ValueError, match=r"^priority: must be"):
        queue.task(name="declared", priority=priority)(_noop)
    with pytest.raises(ValueError, match=r"^priority: must be"):
        await queue.enqueue("t", priority=priority)


@pytest.mark.parametrize("retries", [1.5, True, "1", -1], ids=short)
async def test_bad_retries_raise(queue: Queue, retries: Any) -> None:
    with pytest.raises(ValueError, match=r"^retries: must be"):
        queue.task(name="declared", retries=retries)(_noop)
    with pytest.raises(ValueError, match=r"^retries: must be"):
        await queue.enqueue("t", retries=retries)
