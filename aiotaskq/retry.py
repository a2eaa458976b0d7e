"""Retry backoff: pure functions of the attempt number."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeAlias

#: A custom backoff: attempt number (1 after the first failed run) -> seconds.
BackoffFn: TypeAlias = Callable[[int], float]


class Backoff:
    """Exponential backoff with full jitter.

    The n-th retry waits a random time in ``[0, min(max, min * 2**(n-1))]``
    ("full jitter"), which spreads retries of jobs that failed together.
    """

    __slots__ = ("max", "min")

    def __init__(self, min: float = 1.0, max: float = 300.0) -> None:  # noqa: A002
        if min < 0:
            raise ValueError(f"backoff min: must be >= 0 seconds, got {min!r}")
        if max < min:
            raise ValueError(f"backoff max: must be >= min ({min!r}), got {max!r}")
        self.min = min
        self.max = max

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt ``attempt`` (1-based)."""
        return min(self.max, self.min * 2.0 ** min(max(attempt - 1, 0), 64))

    def __call__(self, attempt: int) -> float:
        return random.uniform(0.0, self.ceiling(attempt))  # noqa: S311 - jitter, not crypto

    def __repr__(self) -> str:
        return f"Backoff(min={self.min!r}, max={self.max!r})"


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
