"""Watches a pool's event loop: a task that blocks it stalls heartbeats, claims and every other job.

The watcher sleeps ``interval`` seconds over and over and measures how late it
wakes up. A lag above ``threshold`` means something ran on the loop without
yielding (``time.sleep`` or blocking I/O inside an ``async def``): it is logged
as a warning, naming how close the stall came to ``stale_timeout``, past which
other pools declare this one dead and requeue its jobs.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import anyio

log = logging.getLogger("aiotaskq")

INTERVAL: Final = 0.25
THRESHOLD: Final = 0.5


async def watch_event_loop(stale_timeout: float, *, interval: float = INTERVAL, threshold: float = THRESHOLD) -> None:
    """Log a warning whenever the event loop was blocked longer than ``threshold`` seconds; runs until cancelled."""
    while True:
        start = time.monotonic()
        await anyio.sleep(interval)
        lag = time.monotonic() - start - interval
        if lag > threshold:
            log.warning(
                "the event loop was blocked for %.2fs (stale_timeout is %gs): a task is running blocking code "
                "in an async def; make it a plain def (it then runs in a thread) or use anyio.to_thread",
                lag, stale_timeout,
            )  # fmt: skip
