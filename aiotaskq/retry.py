"""Retry backoff: pure functions of the attempt number."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import TypeAlias

#: A custom backoff: attempt number (1 after the first failed run) -> seconds.
BackoffFn: TypeAlias = Callable[[int], float]


class Backoff:
    """Exponential backoff, with full jitter by default.

    The n-th retry waits up to ``min(max, min * factor**(n-1))`` seconds: with
    ``jitter=True`` (the default) a random time in ``[0, that]`` ("full jitter"),
    which spreads retries of jobs that failed together; with ``jitter=False``
    exactly that ceiling. ``factor`` (>= 1) is the growth per retry.
    """

    __slots__ = ("factor", "jitter", "max", "min")

    def __init__(self, min: float = 1.0, max: float = 300.0, factor: float = 2.0, jitter: bool = True) -> None:  # noqa: A002
        if not _number(min) or min < 0:
            raise ValueError(f"backoff min: must be >= 0 seconds, got {min!r}")
        if not _number(max) or max < min:
            raise ValueError(f"backoff max: must be >= min ({min!r}), got {max!r}")
        if not _number(factor) or factor < 1:
            raise ValueError(f"backoff factor: must be a number >= 1, got {factor!r}")
        if not isinstance(jitter, bool):
            raise ValueError(f"backoff jitter: must be True or False, got {jitter!r}")
        self.min = min
        self.max = max
        self.factor = float(factor)
        self.jitter = jitter

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt ``attempt`` (1-based)."""
        n = max(attempt - 1, 0)
        if self.factor == 1.0 or self.min == 0:
            return min(self.max, float(self.min))
        # Past the cap the power would only overflow: stop at the first exponent that reaches it.
        limit = math.ceil(math.log(self.max / self.min, self.factor)) if self.max > self.min else 0
        return min(self.max, self.min * self.factor ** min(n, limit))

    def __call__(self, attempt: int) -> float:
        ceiling = self.ceiling(attempt)
        return random.uniform(0.0, ceiling) if self.jitter else ceiling  # noqa: S311 - jitter, not crypto

    def __repr__(self) -> str:
        extra = "" if self.factor == 2.0 else f", factor={self.factor!r}"
        extra += "" if self.jitter else ", jitter=False"
        return f"Backoff(min={self.min!r}, max={self.max!r}{extra})"


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


DEFAULT_BACKOFF = Backoff()


def as_backoff(value: Backoff | BackoffFn | tuple[float, float] | None) -> BackoffFn:
    """Accept a Backoff, a ``(min, max)`` pair or a function of the attempt number."""
    if value is None:
        return DEFAULT_BACKOFF
    if isinstance(value, tuple):
        return Backoff(*value)
    if not callable(value):
        raise ValueError(f"backoff: expected Backoff, (min, max) or a function, got {value!r}")
    return value
