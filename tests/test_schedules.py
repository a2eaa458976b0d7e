"""Recurring schedules against a real Redis: exactly once per tick across pools, runtime
management, misfire after a downtime, declared-in-code schedules, bad input."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from _util import queue_keys, queued_ids, run_pool, wait_for, wait_status

from aiotaskq import JobStatus, Queue, ScheduleInfo, cli
from aiotaskq._scheduler import Scheduler
from aiotaskq.cron import CATCH_UP_MAX
from aiotaskq.job import encode_payload
from aiotaskq.schedule import build, encode_spec, job_id
from aiotaskq.testing import job_fields


async def redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def tick_jobs(q: Queue, key: str) -> dict[int, bytes]:
    """Tick time -> status of every job the schedule ``key`` enqueued."""
    prefix = f"schedule:{key}:"
    out: dict[int, bytes] = {}
    k = q.keys
    for zset in (k.scheduled, k.queued, k.succeeded, k.failed, k.cancelled):
        if zset == k.queued:
            raws = await queued_ids(q)
        else:
            raws = await q.redis.zrange(zset, 0, -1)  # type: ignore[assignment]
        for raw in raws:
            jid = raw.decode()
            if jid.startswith(prefix):
                (fields,) = await job_fields(q, [jid])
                out[int(jid[len(prefix) :])] = None if fields is None else fields["status"]  # type: ignore[assignment]
    return out


async def field(q: Queue, jid: str, name: str) -> bytes | None:
    """One field of a job as Redis holds it (see _record.py), None when empty or no such job."""
    (fields,) = await job_fields(q, [jid])
    return None if fields is None else fields.get(name)


async def drain_scheduler(q: Queue) -> Scheduler:
    """Run scheduler rounds (real Redis clock) until nothing is due."""
    s = Scheduler(q, poll_interval=1.0)
    for _ in range(3 * CATCH_UP_MAX):
        if await s.step() > 0:
            return s
    raise AssertionError("the scheduler kept finding due ticks")


# -- exactly once across pools -------------------------------------------------------------------


async def test_three_pools_run_each_tick_of_an_every_second_schedule_exactly_once(
    queue: Queue, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")  # ticks are logged at DEBUG
    runs: list[int] = []

    def worker_queue() -> Queue:
        q = Queue(queue.name, url=redis_url)  # a process of its own, as far as Redis can tell

        @q.task(name="heartbeat", every=timedelta(seconds=1))
        async def heartbeat() -> None:
            runs.append(1)

        return q

    queues = [worker_queue() for _ in range(3)]
    try:
        with anyio.fail_after(15):
            async with run_pool(queues[0]) as p1, run_pool(queues[1]) as p2, run_pool(queues[2]) as p3:

                async def five_seconds_of_ticks() -> bool:
                    done = [t for t, s in (await tick_jobs(queue, "heartbeat")).items() if s == b"succeeded"]
                    return len(done) >= 6

                await wait_for(five_seconds_of_ticks, 10, "six ticks to run")
    finally:
        for q in queues:
            await q.close()

    jobs = await tick_jobs(queue, "heartbeat")
    ticks = sorted(jobs)
    assert all(t % 1000 == 0 for t in ticks), "interval ticks are aligned to the epoch"
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000)), f"a tick was missed: {ticks}"
    succeeded = [t for t in ticks if jobs[t] == b"succeeded"]
    assert len(runs) == len(succeeded) >= 6, "each tick's job ran exactly once"
    for t in succeeded:
        assert await field(queue, job_id("heartbeat", t), "attempts") == b"1"
    fired = sum(s.fired for p in (p1, p2, p3) for s in p.schedulers)
    assert fired == len(ticks), "one pool fired each tick; the others' calls changed nothing"
    logged = [r.getMessage() for r in caplog.records if "enqueued job schedule:heartbeat:" in r.getMessage()]
    assert len(logged) == len(ticks)


async def test_tick_fires_only_while_the_schedule_holds_the_tick_seen_and_never_early(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await queue.schedule("k", "t", every=1)
    spec: bytes = await queue.redis.hget(k.schedules, "k")  # type: ignore[assignment]
    seen = (await redis_ms(queue)) // 1000 * 1000 - 1000
    await queue.redis.zadd(k.schedules_next, {"k": seen})
    payload = encode_payload((), {})

    def tick(at: int, stored_spec: bytes = spec) -> Any:
        return s.run(s.tick("k", at, stored_spec, at, at + 1000, job_id=job_id("k", at), task="t",
                            payload=payload, priority=0))  # fmt: skip

    assert await tick(seen) == 1
    assert await queue.redis.zscore(k.schedules_next, "k") == seen + 1000
    seen_id = job_id("k", seen)
    assert await field(queue, seen_id, "due_at") == str(seen).encode()
    # The job ends at once (a fast pool); its id is free again, but a slow pool's call for the
    # same tick is refused by the next-run check: no second job. Ended by hand: its record
    # leaves the jobs hash and its band, and becomes the ended record job:<id>.
    raw: bytes = await queue.redis.hget(k.jobs, seen_id)  # type: ignore[assignment]
    now = await redis_ms(queue)
    await queue.redis.hdel(k.jobs, seen_id)
    assert await queue.redis.lrem(k.band(0), 0, seen_id) == 1
    await queue.redis.zrem(k.queued, "0")
    await queue.redis.set(k.job(seen_id), f"S|{now}|0|0|0|0|0|".encode() + raw)
    await queue.redis.zadd(k.succeeded, {seen_id: now})
    assert await field(queue, seen_id, "status") == b"succeeded"
    assert await tick(seen) == 0
    assert await field(queue, seen_id, "status") == b"succeeded"
    assert not await queue.redis.hexists(k.jobs, seen_id)
    # Planned with a spec that has since changed: refused.
    assert await tick(seen + 1000, spec + b"x") == 0
    # A tick the server clock has not reached (a pool whose clock runs ahead): refused.
    future = seen + 60_000
    await queue.redis.zadd(k.schedules_next, {"k": future})
    assert await tick(future) == -1
    assert await queue.redis.zscore(k.schedules_next, "k") == future
    assert await job_fields(queue, [job_id("k", future)]) == [None]


# -- runtime management --------------------------------------------------------------------------


async def test_runtime_schedule_is_picked_up_at_once_and_unschedule_stops_it(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiotaskq")  # ticks are logged at DEBUG
    got: list[tuple[int, str]] = []

    @queue.task(name="remind")
    async def remind(customer: int, note: str = "") -> None:
        got.append((customer, note))

    poll = 5.0  # the scheduler's longest sleep: a pick-up that waited for it would be seconds late
    async with run_pool(queue, idle=True, poll_interval=poll):
        start_ms = (await redis_ms(queue)) + 300
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        info = await queue.schedule("customer:42", remind, every=timedelta(seconds=1), args=(42,),
                                    kwargs={"note": "hi"}, start_at=start)  # fmt: skip
        assert isinstance(info, ScheduleInfo)
        assert (info.key, info.task, info.spec, info.next_run) == ("customer:42", "remind", "every 1s", start)
        first, second = job_id("customer:42", start_ms), job_id("customer:42", start_ms + 1000)
        await wait_status(queue, first, JobStatus.SUCCEEDED, timeout=3)
        enq_at = int(await field(queue, first, "enq_at") or b"")
        assert 0 <= enq_at - start_ms < 1000 < poll * 1000, "picked up without waiting for a poll"
        await wait_status(queue, second, JobStatus.SUCCEEDED, timeout=3)
        assert got[:2] == [(42, "hi"), (42, "hi")]

        [listed] = await queue.schedules()
        assert listed.key == "customer:42" and listed.args == (42,) and listed.kwargs == {"note": "hi"}
        assert listed.last_run is not None and listed.next_run is not None and listed.next_run > listed.last_run
        assert listed.last_job_id == job_id("customer:42", round(listed.last_run.timestamp() * 1000))

        assert await queue.unschedule("customer:42") is True
        before = await tick_jobs(queue, "customer:42")
        await anyio.sleep(1.5)  # longer than a period: a live schedule would have ticked again
        assert await tick_jobs(queue, "customer:42") == before
        assert await queue.unschedule("customer:42") is False
        assert await queue.schedules() == []
    assert any("enqueued job schedule:customer:42:" in r.getMessage() for r in caplog.records)


async def test_an_unchanged_spec_keeps_its_next_run_and_a_changed_one_is_replanned(queue: Queue) -> None:
    a = await queue.schedule("report", "reports.build", cron="*/5 * * * *", args=("eu",))
    assert a.next_run is not None and a.next_run.minute % 5 == 0 and a.next_run.second == 0
    past = (await redis_ms(queue)) // 60_000 * 60_000 - 3_600_000  # missed ticks, as after a downtime
    await queue.redis.zadd(queue.keys.schedules_next, {"report": past})
    b = await queue.schedule("report", "reports.build", cron="*/5 * * * *", args=("eu",))
    assert b.next_run == datetime.fromtimestamp(past / 1000, UTC), "kept, so the misfire policy sees the missed ticks"
    c = await queue.schedule("report", "reports.build", cron="*/10 * * * *", args=("eu",))
    assert c.next_run is not None and c.next_run.timestamp() * 1000 > past + 3_600_000
    assert c.next_run.minute % 10 == 0
    assert [s.spec for s in await queue.schedules()] == ["cron '*/10 * * * *' (UTC)"]


async def test_declared_schedules_are_upserted_at_pool_start_keyed_by_task_name(queue: Queue) -> None:
    @queue.task(name="nightly", cron="30 2 * * *", tz="Europe/Berlin", misfire="skip", priority=7)
    async def nightly() -> None: ...

    s = Scheduler(queue, poll_interval=1.0)
    await s.declare()
    [info] = await queue.schedules()
    assert (info.key, info.task, info.spec, info.misfire, info.priority, info.declared) == (
        "nightly", "nightly", "cron '30 2 * * *' (Europe/Berlin)", "skip", 7, True,
    )  # fmt: skip
    assert info.next_run is not None
    local = info.next_run.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) in ((2, 30), (3, 0))
    past = (await redis_ms(queue)) - 3 * 86_400_000
    await queue.redis.zadd(queue.keys.schedules_next, {"nightly": past})
    await Scheduler(queue, poll_interval=1.0).declare()  # another pool starting
    assert await queue.redis.zscore(queue.keys.schedules_next, "nightly") == past


# -- misfire after a downtime --------------------------------------------------------------------


@pytest.mark.parametrize("misfire", [None, "skip", "all"])
async def test_misfire_policy_after_ten_missed_seconds(queue: Queue, misfire: str | None) -> None:
    await queue.schedule("m", "t", every=1, misfire=misfire)
    seen = (await redis_ms(queue)) // 1000 * 1000 - 10_000  # every pool was down for 10 s
    await queue.redis.zadd(queue.keys.schedules_next, {"m": seen})
    await drain_scheduler(queue)
    now = await redis_ms(queue)
    ticks = sorted(await tick_jobs(queue, "m"))
    if misfire is None:  # once for all the missed ticks: the latest
        assert len(ticks) == 1 and seen + 10_000 <= ticks[0] <= now
    elif misfire == "skip":
        assert ticks == []
    else:  # each missed tick
        assert ticks == list(range(seen, ticks[-1] + 1000, 1000)) and len(ticks) >= 11
    next_run = await queue.redis.zscore(queue.keys.schedules_next, "m")
    assert next_run is not None and now - 1000 < next_run <= now + 1000 and next_run % 1000 == 0


async def test_misfire_all_is_bounded(queue: Queue) -> None:
    await queue.schedule("m", "t", every=1, misfire="all")
    seen = (await redis_ms(queue)) // 1000 * 1000 - 250_000
    await queue.redis.zadd(queue.keys.schedules_next, {"m": seen})
    await drain_scheduler(queue)
    ticks = sorted(await tick_jobs(queue, "m"))
    # The most recent CATCH_UP_MAX missed ticks run (plus one if the clock reached a new tick meanwhile).
    assert CATCH_UP_MAX <= len(ticks) <= CATCH_UP_MAX + 1
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000)) and ticks[0] > seen


async def test_a_schedule_ends_after_end_at(queue: Queue) -> None:
    seen = (await redis_ms(queue)) // 1000 * 1000 - 10_000
    end = datetime.fromtimestamp((seen + 2000) / 1000, UTC)  # passed while every pool was down
    spec = build(queue, "e", "t", every=1, end_at=end)
    await queue.scripts.schedule_set("e", encode_spec(spec), seen)
    await drain_scheduler(queue)
    assert sorted(await tick_jobs(queue, "e")) == [seen + 2000], "the last tick before end_at ran, once"
    [info] = await queue.schedules()
    assert info.next_run is None and info.last_run == end, "ended, still listed"
    assert await queue.redis.zcard(queue.keys.schedules_next) == 0


# -- bad input -----------------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"cron": "every five minutes"}, "cron: invalid expression"),
    ({"cron": "*/5 * * * *", "tz": "Europe/Atlantis"}, "tz: unknown time zone 'Europe/Atlantis'"),
    ({"every": 0}, "every: must be a positive interval"),
    ({"every": timedelta(seconds=-30)}, "every: must be a positive interval"),
    ({"cron": "* * * * *", "every": 5}, "cron, every: give exactly one"),
    ({"every": 5, "misfire": "sometimes"}, "misfire: must be one of"),
]


@pytest.mark.parametrize(("options", "message"), [*BAD, ({}, "cron, every: give exactly one")])
async def test_bad_schedule_raises_value_error_and_writes_nothing(
    queue: Queue, options: dict[str, Any], message: str
) -> None:
    @queue.task(name="noop")
    async def noop() -> None: ...

    with pytest.raises(ValueError, match=r".") as info:
        await queue.schedule("k", noop, **options)
    assert message in str(info.value)
    assert await queue_keys(queue) == []


async def test_a_task_needing_arguments_needs_args(queue: Queue) -> None:
    @queue.task(name="send")
    async def send(to: str, subject: str = "") -> None: ...

    with pytest.raises(ValueError, match=r"args: task 'send' needs arguments .*'to'"):
        await queue.schedule("k", send, every=60)
    with pytest.raises(ValueError, match=r"args: task 'send' cannot take these arguments"):
        await queue.schedule("k", "send", every=60, kwargs={"cc": "x"})
    with pytest.raises(ValueError, match=r"end_at: schedule 'k' has no tick left"):
        await queue.schedule("k", send, every=60, args=("a",), end_at=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"key: a schedule key must be a non-empty string"):
        await queue.schedule("", send, every=60, args=("a",))
    assert await queue_keys(queue) == []
    with pytest.raises(ValueError, match=r"args: task 'needy' needs arguments"):

        @queue.task(name="needy", every=60)
        async def needy(x: int) -> None: ...

    assert "needy" not in queue.tasks


@pytest.mark.parametrize(("options", "message"), BAD)
def test_bad_declaration_raises_value_error_and_registers_nothing(
    queue: Queue, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=r".") as info:

        @queue.task(name="job", **options)
        async def job() -> None: ...

    assert message in str(info.value)
    assert "job" not in queue.tasks


def test_tz_or_misfire_without_a_schedule_is_refused(queue: Queue) -> None:
    async def job() -> None: ...

    with pytest.raises(ValueError, match=r"tz, misfire: only apply to a recurring task"):
        queue.task(name="job", tz="Europe/Berlin")(job)
    assert "job" not in queue.tasks


# -- command line --------------------------------------------------------------------------------


async def test_cli_lists_schedules_with_their_next_run(
    queue: Queue, redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    info = await queue.schedule("customer:7", "billing.invoice", cron="0 9 1 * *", tz="America/New_York", args=(7,))
    module = f"sched_app_{abs(hash(queue.name))}"
    (tmp_path / f"{module}.py").write_text(f"from aiotaskq import Queue\nqueue = Queue({queue.name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert info.next_run is not None

    code = await anyio.to_thread.run_sync(cli.main, ["schedules", f"{module}:queue", "--url", redis_url])
    out = capsys.readouterr().out
    assert code == 0
    assert f"queue {queue.name!r} at {redis_url}: 1 schedule(s)" in out
    next_run = info.next_run.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"customer:7  billing.invoice  cron '0 9 1 * *' (America/New_York)  next {next_run} (in " in out
    assert "never run" in out

    code = await anyio.to_thread.run_sync(cli.main, ["schedules", f"{module}:queue", "--url", redis_url, "--json"])
    [entry] = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["key"] for s in entry["schedules"]] == ["customer:7"]
    assert entry["schedules"][0]["args"] == [7]
