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


@pytest.mark.parametrize(
    ("lo", "hi", "factor", "attempt", "wait"),
    [
        (1.0, 300.0, 2.0, 1, 1.0),
        (1.0, 300.0, 2.0, 4, 8.0),
        (1.0, 300.0, 2.0, 10, 300.0),
        (1.0, 300.0, 3.0, 1, 1.0),
        (1.0, 300.0, 3.0, 2, 3.0),
        (1.0, 300.0, 3.0, 5, 81.0),
        (1.0, 300.0, 3.0, 6, 243.0),
        (1.0, 300.0, 3.0, 7, 300.0),  # 729 capped at max
        (0.5, 100.0, 1.5, 3, 1.125),
        (2.0, 60.0, 1.0, 1, 2.0),  # factor 1: a constant wait
        (2.0, 60.0, 1.0, 50, 2.0),
        (1.0, 300.0, 10.0, 10**9, 300.0),  # no overflow for absurd attempt numbers
        (1.0, 1e6, 1e300, 3, 1e6),  # nor for absurd factors
        (0.0, 10.0, 3.0, 4, 0.0),
        (5.0, 5.0, 4.0, 3, 5.0),
    ],
)
def test_without_jitter_the_wait_is_the_exponential_ceiling(
    lo: float, hi: float, factor: float, attempt: int, wait: float
) -> None:
    backoff = Backoff(lo, hi, factor=factor, jitter=False)
    assert backoff.ceiling(attempt) == pytest.approx(wait)
    assert backoff(attempt) == pytest.approx(wait)
    assert backoff(attempt) == backoff(attempt)  # deterministic


def test_factor_shapes_the_jittered_range_too() -> None:
    backoff = Backoff(1.0, 1000.0, factor=3.0)
    random.seed(99)
    values = [backoff(4) for _ in range(500)]  # ceiling 27
    assert all(0.0 <= v <= 27.0 for v in values)
    assert max(values) > 27.0 * 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 0.5}, "^backoff factor: must be a number >= 1"),
        ({"factor": 0}, "^backoff factor:"),
        ({"factor": float("nan")}, "^backoff factor:"),
        ({"factor": float("inf")}, "^backoff factor:"),
        ({"factor": "2"}, "^backoff factor:"),
        ({"jitter": "no"}, "^backoff jitter: must be True or False"),
        ({"min": float("nan")}, "^backoff min:"),
        ({"max": float("inf")}, "^backoff max:"),
    ],
)
def test_invalid_factor_and_jitter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backoff", "text"),
    [
        (Backoff(), "Backoff(min=1.0, max=300.0)"),
        (Backoff(2, 60, factor=3.0), "Backoff(min=2, max=60, factor=3.0)"),
        (Backoff(2, 60, jitter=False), "Backoff(min=2, max=60, jitter=False)"),
        (Backoff(1, 9, factor=1.5, jitter=False), "Backoff(min=1, max=9, factor=1.5, jitter=False)"),
    ],
)
def test_repr_shows_what_differs_from_the_defaults(backoff: Backoff, text: str) -> None:
    assert repr(backoff) == text
