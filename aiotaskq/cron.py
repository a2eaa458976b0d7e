"""When recurring ticks fall: pure functions of a rule and explicit times (no I/O, no clock).

A :class:`Rule` is either a cron expression, read in a time zone by ``cronsim``
(5 fields, or 6 with a leading seconds field), or a fixed interval counted from a
fixed origin (``start_at``, else the Unix epoch), so every pool computes the same
ticks whatever its clock or start time. Times are epoch milliseconds.

Daylight saving (5-field cron in a zone with DST, as Debian cron does): a
fixed-time job whose local time is skipped (02:30 on the spring-forward day) runs
once, at the first valid minute after the gap; one whose local time repeats runs
once, at its first occurrence. Jobs with ``*`` in the minute or hour field follow
real time (an hourly job runs every real hour).

Misfire, when a schedule is more than one period late (every pool was down), in
:func:`plan`: ``"once"`` (default) runs one job for the latest missed tick;
``"skip"`` runs none and waits for the next tick; ``"all"`` runs every missed
tick, but at most :data:`CATCH_UP_MAX`, the most recent ones.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Literal, NamedTuple, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

Misfire = Literal["once", "skip", "all"]
MISFIRES: Final[tuple[str, ...]] = get_args(Misfire)

#: ``misfire="all"``: most missed ticks run after a downtime; older ones are dropped.
CATCH_UP_MAX: Final = 100

_Y2K_MS: Final = 946_684_800_000


class Rule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The timing of a schedule (validated by :func:`make_rule`)."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"
    start_ms: int | None = None  # no tick before; the origin of an interval
    end_ms: int | None = None  # no tick after
    misfire: Misfire = "once"

    def describe(self) -> str:
        """``cron '*/5 * * * *' (Europe/Berlin)`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        assert self.every_ms is not None
        return f"every {_seconds(self.every_ms)}"


class Plan(NamedTuple):
    """What to do with a due schedule: the tick to run a job for (None: skip) and
    the next run to store (None: the schedule has ended)."""

    fire_ms: int | None
    next_ms: int | None


def make_rule(
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    tz: str | None = None,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    misfire: str | None = None,
) -> Rule:
    """Validate a schedule's timing; raises ValueError naming the bad argument."""
    if (cron is None) == (every is None):
        raise ValueError("cron, every: give exactly one of them")
    start_ms = _aware_ms("start_at", start_at)
    end_ms = _aware_ms("end_at", end_at)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ValueError("end_at: must be later than start_at")
    if misfire is not None and misfire not in MISFIRES:
        raise ValueError(f"misfire: must be one of {', '.join(map(repr, MISFIRES))}, got {misfire!r}")
    policy = cast(Misfire, misfire or "once")
    if every is not None:
        if tz is not None:
            raise ValueError("tz: only a cron schedule has a time zone (an interval counts from its origin)")
        return Rule(every_ms=_interval_ms(every), start_ms=start_ms, end_ms=end_ms, misfire=policy)
    if not isinstance(cron, str):
        raise ValueError(f"cron: must be a string, got {cron!r}")
    expr = " ".join(cron.split())
    zone = tz if tz is not None else "UTC"
    _zone(zone)
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        fields = len(expr.split())
        what = str(exc) if fields in (5, 6) else f"expected 5 fields (or 6 with leading seconds), got {fields}"
        raise ValueError(f"cron: invalid expression {cron!r}: {what}") from None
    rule = Rule(cron=expr, tz=zone, start_ms=start_ms, end_ms=end_ms, misfire=policy)
    if next_tick(rule, max(start_ms or 0, _Y2K_MS)) is None:
        raise ValueError(f"cron: {cron!r} never matches")
    return rule


def next_tick(rule: Rule, after_ms: int) -> int | None:
    """The first tick strictly after ``after_ms`` (None: no more ticks)."""
    if rule.start_ms is not None:
        after_ms = max(after_ms, rule.start_ms - 1)
    t: int | None
    if rule.every_ms is not None:
        origin = rule.start_ms or 0
        t = origin if after_ms < origin else origin + ((after_ms - origin) // rule.every_ms + 1) * rule.every_ms
    else:
        t = _cron_next(rule, after_ms)
    if t is None or (rule.end_ms is not None and t > rule.end_ms):
        return None
    return t


def last_tick(rule: Rule, at_ms: int) -> int | None:
    """The latest tick at or before ``at_ms`` (None: none)."""
    recent = _recent_ticks(rule, at_ms, 1)
    if not recent:
        return None
    t = recent[0]
    # cronsim's reverse walk may miss a tick in a repeated (fall-back) hour: walk forward from it.
    while (later := next_tick(rule, t)) is not None and later <= at_ms:
        t = later
    return t


def plan(rule: Rule, due_ms: int, now_ms: int) -> Plan:
    """Decide what to do with a schedule whose next run ``due_ms`` has come (``<= now_ms``).

    When the tick after ``due_ms`` has not come yet the schedule is merely late
    (less than one period): run ``due_ms``. Otherwise ticks were missed and the
    misfire policy decides.
    """
    following = next_tick(rule, due_ms)
    if following is None or following > now_ms:
        return Plan(due_ms, following)
    if rule.misfire == "all":
        recent = _recent_ticks(rule, now_ms, CATCH_UP_MAX)
        fire = due_ms if len(recent) < CATCH_UP_MAX or recent[-1] <= due_ms else recent[-1]
        return Plan(fire, next_tick(rule, fire))
    latest = last_tick(rule, now_ms)
    if latest is None or latest < following:
        latest = following
    return Plan(latest if rule.misfire == "once" else None, next_tick(rule, latest))


# -- helpers -------------------------------------------------------------------------------------


def _recent_ticks(rule: Rule, at_ms: int, n: int) -> list[int]:
    """Up to ``n`` latest ticks at or before ``at_ms``, newest first."""
    if rule.end_ms is not None:
        at_ms = min(at_ms, rule.end_ms)
    floor = rule.start_ms if rule.start_ms is not None else -math.inf
    out: list[int] = []
    if rule.every_ms is not None:
        origin = rule.start_ms or 0
        if at_ms < origin:
            return out
        t = origin + (at_ms - origin) // rule.every_ms * rule.every_ms
        while len(out) < n and t >= floor:
            out.append(t)
            t -= rule.every_ms
        return out
    assert rule.cron is not None
    it = CronSim(rule.cron, datetime.fromtimestamp(at_ms // 1000 + 1, _zone(rule.tz)), reverse=True)
    for dt in it:
        t = round(dt.timestamp()) * 1000
        if t < floor or len(out) >= n:
            break
        out.append(t)
    return out


def _cron_next(rule: Rule, after_ms: int) -> int | None:
    assert rule.cron is not None
    it = CronSim(rule.cron, datetime.fromtimestamp(after_ms / 1000, _zone(rule.tz)))
    for _ in range(5):  # cronsim may answer an earlier time when starting inside a repeated hour
        try:
            t = round(next(it).timestamp()) * 1000
        except StopIteration:  # no match within 50 years
            return None
        if t > after_ms:
            return t
    return None


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC  # cronsim skips its DST handling for datetime.UTC
    if not isinstance(name, str) or not name:
        raise ValueError(f"tz: must be an IANA time zone name such as 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz: unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin')") from None


def _interval_ms(every: timedelta | float) -> int:
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ValueError(f"every: must be a timedelta or a number of seconds, got {every!r}")
    if not seconds > 0:  # also rejects NaN
        raise ValueError(f"every: must be a positive interval, got {every!r}")
    ms = round(seconds * 1000)
    if ms < 1:
        raise ValueError(f"every: must be at least 1 ms, got {every!r}")
    return ms


def _aware_ms(name: str, value: datetime | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"{name}: must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: must be timezone-aware (a naive datetime is ambiguous)")
    return round(value.timestamp() * 1000)


def _seconds(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s"
