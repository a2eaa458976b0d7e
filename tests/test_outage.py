"""The back-off of a pool's loops while Redis does not answer (aiotaskq/_outage.py)."""

from __future__ import annotations

import logging

import pytest

from aiotaskq._outage import Outage


def test_the_wait_doubles_to_one_second_and_starts_afresh_after_a_success(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("claim on queue 'q'")
    err = ConnectionError("refused")
    with caplog.at_level(logging.DEBUG, logger="aiotaskq"):
        waits = [outage.failed(err) for _ in range(8)]
        assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # a failover's take-over: 1 to 3 s
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == ["claim on queue 'q' failed (refused); retrying in 0.05s"]
        assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 7  # the others, not as warnings
        outage.ok()
        assert caplog.records[-1].getMessage() == "claim on queue 'q' works again after 8 failed tries"
        assert outage.failed(err) == 0.05
        assert caplog.records[-1].levelno == logging.WARNING  # a new outage is told again


def test_a_long_outage_warns_again_every_30_seconds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("aiotaskq._outage.time.monotonic", lambda: clock[0])
    outage = Outage("scheduler on queue 'q'")
    with caplog.at_level(logging.WARNING, logger="aiotaskq"):
        for _ in range(40):  # a try a second
            outage.failed(OSError("down"))
            clock[0] += 1.0
    assert [r.getMessage().rsplit("; ", 1)[1] for r in caplog.records] == [
        "retrying in 0.05s", "retrying in 1.00s (31 tries so far)",
    ]  # fmt: skip
