"""The pure tick maths of ``aiotaskq.cron``, from tables, with a fixed clock (times passed in)."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aiotaskq.cron import CATCH_UP_MAX, Plan, Rule, last_tick, make_rule, next_tick, plan

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ms(*args: int, tz: Any = UTC, fold: int = 0) -> int:
    return round(datetime(*args, tzinfo=tz, fold=fold).timestamp() * 1000)  # type: ignore[arg-type,misc]


def local(t: int | None, tz: Any) -> str | None:
    return None if t is None else datetime.fromtimestamp(t / 1000, tz).isoformat()


def ticks(rule: Rule, after_ms: int, n: int) -> list[int]:
    out: list[int] = []
    t: int | None = after_ms
    while len(out) < n and (t := next_tick(rule, t)) is not None:  # type: ignore[arg-type]
        out.append(t)
    return out


def run(rule: Rule, due_ms: int, now_ms: int) -> list[int]:
    """What a scheduler does with a clock stopped at ``now_ms``: plan until the next run is in
    the future; returns the ticks that got a job."""
    fired: list[int] = []
    t: int | None = due_ms
    for _ in range(10 * CATCH_UP_MAX):
        if t is None or t > now_ms:
            return fired
        p = plan(rule, t, now_ms)
        if p.fire_ms is not None:
            fired.append(p.fire_ms)
        assert p.next_ms is None or p.next_ms > t, "the next run must move forward"
        t = p.next_ms
    raise AssertionError("plan did not converge")


# -- next_tick -----------------------------------------------------------------------------------

EVERY_30S = make_rule(every=timedelta(seconds=30))
START = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "after", "expected"),
    [
        # Intervals are aligned to the epoch, so every pool computes the same ticks.
        (EVERY_30S, 0, 30_000),
        (EVERY_30S, 29_999, 30_000),
        (EVERY_30S, 30_000, 60_000),  # strictly after
        (EVERY_30S, 30_001, 60_000),
        (make_rule(every=0.25), 1_000, 1_250),
        # With start_at the origin is start_at: the first tick is start_at itself.
        (make_rule(every=30, start_at=START), 0, ms(2024, 5, 1, 12, 0, 10)),
        (make_rule(every=30, start_at=START), ms(2024, 5, 1, 12, 0, 10), ms(2024, 5, 1, 12, 0, 40)),
        (make_rule(every=30, start_at=START), ms(2024, 5, 1, 12, 0, 11), ms(2024, 5, 1, 12, 0, 40)),
        # end_at: no tick after it.
        (make_rule(every=30, end_at=datetime(1970, 1, 1, 0, 1, tzinfo=UTC)), 59_000, 60_000),
        (make_rule(every=30, end_at=datetime(1970, 1, 1, 0, 1, tzinfo=UTC)), 60_000, None),
        # Cron, 5 fields (minute resolution) and 6 with a leading seconds field.
        (make_rule(cron="*/5 * * * *"), ms(2024, 5, 1, 12, 3, 30), ms(2024, 5, 1, 12, 5)),
        (make_rule(cron="*/5 * * * *"), ms(2024, 5, 1, 12, 5), ms(2024, 5, 1, 12, 10)),
        (make_rule(cron="*/5 * * * *"), ms(2024, 5, 1, 12, 4, 59) + 999, ms(2024, 5, 1, 12, 5)),
        (make_rule(cron="*/10 * * * * *"), ms(2024, 5, 1, 12, 0, 1), ms(2024, 5, 1, 12, 0, 10)),
        (make_rule(cron="30 0 9 * * MON-FRI"), ms(2024, 5, 3, 9, 0, 31), ms(2024, 5, 6, 9, 0, 30)),  # Fri -> Mon
        (make_rule(cron="0 9 * * *", tz="Europe/Berlin"), ms(2024, 5, 1), ms(2024, 5, 1, 9, tz=BERLIN)),
        (make_rule(cron="0 0 29 2 *"), ms(2024, 3, 1), ms(2028, 2, 29)),
        (make_rule(cron="0 12 * * *", start_at=START), 0, ms(2024, 5, 2, 12)),  # START is 12:00:10
        (make_rule(cron="0 12 * * *", start_at=START - timedelta(seconds=10)), 0, ms(2024, 5, 1, 12)),  # inclusive
        (make_rule(cron="0 12 * * *", start_at=START), ms(2024, 5, 2, 12), ms(2024, 5, 3, 12)),
    ],
)
def test_next_tick(rule: Rule, after: int, expected: int | None) -> None:
    assert next_tick(rule, after) == expected


@pytest.mark.parametrize(
    ("rule", "at", "expected"),
    [
        (EVERY_30S, 59_999, 30_000),
        (EVERY_30S, 60_000, 60_000),  # at or before
        (make_rule(every=30, start_at=START), ms(2024, 5, 1, 12, 0, 9), None),
        (make_rule(cron="*/5 * * * *"), ms(2024, 5, 1, 12, 9, 59), ms(2024, 5, 1, 12, 5)),
        (make_rule(cron="*/5 * * * *"), ms(2024, 5, 1, 12, 10), ms(2024, 5, 1, 12, 10)),
        # 02:20 in the second (winter-time) pass of the repeated hour: today's 02:30 (summer
        # time) has already happened, an hour of real time ago.
        (make_rule(cron="30 2 * * *", tz="Europe/Berlin"), ms(2024, 10, 27, 2, 20, tz=BERLIN, fold=1),
         ms(2024, 10, 27, 2, 30, tz=BERLIN)),
    ],
)  # fmt: skip
def test_last_tick(rule: Rule, at: int, expected: int | None) -> None:
    assert last_tick(rule, at) == expected


# -- daylight saving -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz", "first_day", "expected"),
    [
        # Spring forward: 02:00 -> 03:00 on 2024-03-31 in Berlin. 02:30 does not exist that
        # day: the job runs once, at 03:00, not zero times.
        ("30 2 * * *", BERLIN, (2024, 3, 30),
         ["2024-03-30T02:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]),
        # Fall back: 03:00 -> 02:00 on 2024-10-27. 02:30 happens twice: the job runs once.
        ("30 2 * * *", BERLIN, (2024, 10, 26),
         ["2024-10-26T02:30:00+02:00", "2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]),
        # The same in New York (02:00 -> 03:00 on 2024-03-10; 02:00 -> 01:00 on 2024-11-03).
        ("30 2 * * *", NEW_YORK, (2024, 3, 9),
         ["2024-03-09T02:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]),
        ("30 1 * * *", NEW_YORK, (2024, 11, 2),
         ["2024-11-02T01:30:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]),
    ],
)  # fmt: skip
def test_fixed_time_job_runs_once_a_day_across_dst(
    cron: str, tz: ZoneInfo, first_day: tuple[int, int, int], expected: list[str]
) -> None:
    rule = make_rule(cron=cron, tz=str(tz))
    got = ticks(rule, ms(*first_day, tz=tz), 3)
    assert [local(t, tz) for t in got] == expected
    per_day = Counter(datetime.fromtimestamp(t / 1000, tz).date() for t in ticks(rule, ms(*first_day, tz=tz), 10))
    assert set(per_day.values()) == {1}, "one run per local day, DST day included"


def test_hourly_job_follows_real_time_across_dst() -> None:
    # "0 * * * *" means every real hour: 25 runs on the fall-back day, 23 in spring.
    rule = make_rule(cron="0 * * * *", tz="Europe/Berlin")
    for day, runs in (((2024, 10, 27), 25), ((2024, 3, 31), 23), ((2024, 5, 1), 24)):
        start = ms(*day, tz=BERLIN) - 1
        end = round((datetime(*day, tzinfo=BERLIN) + timedelta(days=1)).timestamp() * 1000)
        got = [t for t in ticks(rule, start, 30) if t < end]
        assert len(got) == runs
        assert all(b - a == 3_600_000 for a, b in itertools.pairwise(got))


def test_a_plan_across_the_dst_day_runs_the_skipped_time_once() -> None:
    # The scheduler's view with a fixed clock: run every due tick through the spring-forward day.
    rule = make_rule(cron="30 2 * * *", tz="Europe/Berlin")
    t = ms(2024, 3, 30, 2, 30, tz=BERLIN)
    fired = []
    for now in range(t, ms(2024, 4, 1, 12, tz=BERLIN), 60_000):  # a clock ticking each minute
        while t <= now:
            p = plan(rule, t, now)
            assert p.fire_ms is not None and p.next_ms is not None
            fired.append(p.fire_ms)
            t = p.next_ms
    assert [local(x, BERLIN) for x in fired] == [
        "2024-03-30T02:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00",
    ]  # fmt: skip


# -- misfire -------------------------------------------------------------------------------------

EVERY_1S = {"every": 1}
T0 = ms(2024, 5, 1, 12)


@pytest.mark.parametrize(
    ("options", "due", "now", "expected"),
    [
        # On time, or late by less than one period: the tick runs, whatever the policy.
        (EVERY_1S, T0, T0, Plan(T0, T0 + 1000)),
        ({**EVERY_1S, "misfire": "skip"}, T0, T0 + 999, Plan(T0, T0 + 1000)),
        ({"cron": "0 3 * * *", "misfire": "skip"}, ms(2024, 5, 1, 3), ms(2024, 5, 1, 23),
         Plan(ms(2024, 5, 1, 3), ms(2024, 5, 2, 3))),
        # Down from T0 to T0 + 10.5 s: 11 ticks due.
        (EVERY_1S, T0, T0 + 10_500, Plan(T0 + 10_000, T0 + 11_000)),  # once: the latest, one job
        ({**EVERY_1S, "misfire": "skip"}, T0, T0 + 10_500, Plan(None, T0 + 11_000)),
        ({**EVERY_1S, "misfire": "all"}, T0, T0 + 10_500, Plan(T0, T0 + 1000)),  # each in turn
        # Beyond CATCH_UP_MAX missed ticks, "all" drops the oldest.
        ({**EVERY_1S, "misfire": "all"}, T0, T0 + 250_000, Plan(T0 + 151_000, T0 + 152_000)),
        # A daily cron down for three days.
        ({"cron": "0 3 * * *"}, ms(2024, 5, 1, 3), ms(2024, 5, 4, 4), Plan(ms(2024, 5, 4, 3), ms(2024, 5, 5, 3))),
        # end_at: the last tick runs, then the schedule ends.
        ({**EVERY_1S, "end_at": datetime.fromtimestamp((T0 + 2000) / 1000, UTC)}, T0 + 2000, T0 + 2000,
         Plan(T0 + 2000, None)),
    ],
)  # fmt: skip
def test_plan(options: dict[str, Any], due: int, now: int, expected: Plan) -> None:
    assert plan(make_rule(**options), due, now) == expected


@pytest.mark.parametrize(
    ("misfire", "missed", "runs"),
    [
        (None, 0, 1),
        ("skip", 0, 1),
        ("all", 0, 1),
        (None, 10, 1),  # default: once for all the missed ticks
        ("once", 10, 1),
        ("skip", 10, 0),
        ("all", 10, 11),
        ("all", CATCH_UP_MAX - 1, CATCH_UP_MAX),
        ("all", 1000, CATCH_UP_MAX),  # bounded
        (None, 1000, 1),
        ("skip", 1000, 0),
    ],
)
def test_misfire_policy_after_a_downtime(misfire: str | None, missed: int, runs: int) -> None:
    rule = make_rule(every=60, misfire=misfire)
    due = 60_000 * 1000
    now = due + missed * 60_000 + 30_000  # half way to the next tick
    fired = run(rule, due, now)
    assert len(fired) == runs
    assert len(set(fired)) == len(fired)
    if fired:
        assert fired[-1] == due + missed * 60_000, "the latest due tick always runs (but for skip)"
        assert all(b - a == 60_000 for a, b in itertools.pairwise(fired))


def test_misfire_with_cron_in_a_zone() -> None:
    rule = make_rule(cron="0 */6 * * *", tz="Europe/Berlin", misfire="all")
    due = ms(2024, 10, 26, 0, tz=BERLIN)
    fired = run(rule, due, ms(2024, 10, 28, 1, tz=BERLIN))
    assert [local(t, BERLIN)[11:16] for t in fired] == [*["00:00", "06:00", "12:00", "18:00"] * 2, "00:00"]  # type: ignore[index]
    assert run(make_rule(cron="0 */6 * * *", tz="Europe/Berlin"), due, ms(2024, 10, 28, 1, tz=BERLIN)) == [
        ms(2024, 10, 28, 0, tz=BERLIN)
    ]


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "cron, every: give exactly one"),
        ({"cron": "* * * * *", "every": 5}, "cron, every: give exactly one"),
        ({"cron": "61 * * * *"}, "cron: invalid expression '61 * * * *': Bad minute"),
        ({"cron": "* * * *"}, "expected 5 fields (or 6 with leading seconds), got 4"),
        ({"cron": "0 0 * * * * *"}, "got 7"),
        ({"cron": "0 0 31 2 *"}, "Bad day-of-month"),
        ({"cron": "@daily"}, "cron: invalid expression"),
        ({"cron": 5}, "cron: must be a string"),
        ({"every": 0}, "every: must be a positive interval"),
        ({"every": -5}, "every: must be a positive interval"),
        ({"every": timedelta(0)}, "every: must be a positive interval"),
        ({"every": timedelta(seconds=-1)}, "every: must be a positive interval"),
        ({"every": float("nan")}, "every: must be a positive interval"),
        ({"every": 0.0001}, "every: must be at least 1 ms"),
        ({"every": "5s"}, "every: must be a timedelta or a number of seconds"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus_Mons"}, "tz: unknown time zone 'Mars/Olympus_Mons'"),
        ({"cron": "* * * * *", "tz": ""}, "tz: must be an IANA time zone name"),
        ({"every": 5, "tz": "Europe/Berlin"}, "tz: only a cron schedule has a time zone"),
        ({"every": 5, "misfire": "later"}, "misfire: must be one of 'once', 'skip', 'all'"),
        ({"every": 5, "start_at": datetime(2024, 1, 1)}, "start_at: must be timezone-aware"),
        ({"every": 5, "end_at": START, "start_at": START}, "end_at: must be later than start_at"),
    ],
)
def test_bad_rules_raise_value_error_naming_the_problem(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        make_rule(**options)
    assert message in str(info.value)


def test_describe() -> None:
    assert make_rule(every=timedelta(seconds=30)).describe() == "every 30s"
    assert make_rule(every=1.5).describe() == "every 1.5s"
    assert make_rule(cron="*/5  *  * * *", tz="Europe/Berlin").describe() == "cron '*/5 * * * *' (Europe/Berlin)"
