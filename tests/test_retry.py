"""Backoff maths: pure functions, tested from tables."""

from __future__ import annotations

import random

import pytest

from aiotaskq import Backoff
from aiotaskq.retry import DEFAULT_BACKOFF, as_backoff


@pytest.mark.parametrize(
    ("lo", "hi", "attempt", "ceiling"),
    [
        (1.0, 300.0, 1, 1.0),
        (1.0, 300.0, 2, 2.0),
        (1.0, 300.0, 3, 4.0),
        (1.0, 300.0, 9, 256.0),
        (1.0, 300.0, 10, 300.0),  # 512 capped at max
        (1.0, 300.0, 100, 300.0),
        (1.0, 300.0, 10**9, 300.0),  # no overflow for absurd attempt numbers
        (1.0, 300.0, 0, 1.0),  # below 1 counts as the first attempt
        (0.5, 10.0, 1, 0.5),
        (0.5, 10.0, 5, 8.0),
        (0.5, 10.0, 6, 10.0),
        (2.0, 2.0, 1, 2.0),
        (2.0, 2.0, 7, 2.0),
        (0.0, 0.0, 3, 0.0),
        (0.0, 5.0, 3, 0.0),  # min 0 never grows
    ],
)
def test_ceiling_doubles_from_min_capped_at_max(lo: float, hi: float, attempt: int, ceiling: float) -> None:
    assert Backoff(lo, hi).ceiling(attempt) == ceiling


@pytest.mark.parametrize(("lo", "hi", "attempt"), [(1.0, 300.0, 1), (1.0, 300.0, 4), (0.5, 10.0, 30), (0.0, 0.0, 2)])
def test_values_lie_in_zero_to_ceiling_with_full_jitter(lo: float, hi: float, attempt: int) -> None:
    backoff = Backoff(lo, hi)
    ceiling = backoff.ceiling(attempt)
    random.seed(1234)
    values = [backoff(attempt) for _ in range(500)]
    assert all(0.0 <= v <= ceiling for v in values)
    if ceiling > 0:
        # Full jitter: spread over the whole range, not clustered at the ceiling.
        assert min(values) < ceiling * 0.1
        assert max(values) > ceiling * 0.9


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (-1.0, 10.0, "^backoff min:"),
        (5.0, 1.0, "^backoff max:"),
        (0.1, 0.0, "^backoff max:"),
    ],
)
def test_invalid_bounds(lo: float, hi: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(lo, hi)


def test_defaults_match_the_contract() -> None:
    backoff = Backoff()
    assert (backoff.min, backoff.max) == (1.0, 300.0)
    assert repr(backoff) == "Backoff(min=1.0, max=300.0)"


def test_as_backoff_accepts_none_a_pair_a_backoff_or_a_function() -> None:
    assert as_backoff(None) is DEFAULT_BACKOFF
    pair = as_backoff((0.5, 4.0))
    assert isinstance(pair, Backoff) and (pair.min, pair.max) == (0.5, 4.0)
    given = Backoff(2.0, 3.0)
    assert as_backoff(given) is given

    def fixed(attempt: int) -> float:
        return 7.0 * attempt

    assert as_backoff(fixed)(2) == 14.0
    with pytest.raises(ValueError, match=r"^backoff:"):
        as_backoff(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^backoff max:"):
        as_backoff((3.0, 1.0))
