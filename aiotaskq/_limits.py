"""Bounds of the values a caller gives (delays, timeouts, keep times, size limits), checked once.

A delay or a due time becomes a Redis score and a ``datetime`` in ``JobInfo``; a keep time
becomes a PEXPIRE. Far beyond a century, a value is a mistake (``1e12`` seconds is the year
33715, which ``datetime`` cannot hold), so every such value is bounded by ``MAX_SECONDS``.
"""

from __future__ import annotations

import math
from typing import Any, Final

#: The longest delay, timeout or keep time accepted: 100 years, in seconds.
MAX_SECONDS: Final = 100 * 365.25 * 86400
_MAX_TEXT: Final = f"{MAX_SECONDS:.0f} seconds (100 years)"

#: ``keep_result=KEEP_FOREVER`` keeps a job's end state until it is purged (it is ``math.inf``).
KEEP_FOREVER: Final = math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_seconds(name: str, value: Any, *, zero: bool) -> float:
    """A finite number of seconds, >= 0 (``zero``) or > 0, at most ``MAX_SECONDS``."""
    if not _is_number(value) or value != value:  # NaN (math.isnan would overflow on a huge int)
        raise ValueError(f"{name}: must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name}: must be {'>=' if zero else '>'} 0 seconds, got {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"{name}: must be at most {_MAX_TEXT}, got {value!r}")
    return float(value)


def check_keep(name: str, value: Any) -> float:
    """A keep time: seconds >= 0 (0 keeps nothing), or ``KEEP_FOREVER``."""
    if _is_number(value) and value == math.inf:
        return math.inf
    try:
        return check_seconds(name, value, zero=True)
    except ValueError as exc:
        raise ValueError(f"{exc}; use keep_result=aiotaskq.KEEP_FOREVER to keep it until purged") from None


def check_byte_limit(name: str, value: int) -> int:
    """A size limit in bytes: an int > 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: must be an int > 0, got {value!r}")
    return value


def keep_ms(seconds: float) -> int:
    """A checked keep time as the scripts take it: ms, 0 keeps nothing, -1 keeps forever."""
    return -1 if seconds == math.inf else round(seconds * 1000)


def check_wait(replicas: Any, timeout: Any) -> tuple[int, float]:
    """``wait_replicas``: an int >= 0 (0: do not wait); ``wait_timeout``: seconds > 0."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"wait_replicas: expected an int >= 0 (replicas that must confirm a write), got {replicas!r}")
    return replicas, check_seconds("wait_timeout", timeout, zero=False)
