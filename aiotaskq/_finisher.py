"""Records the outcomes of finished attempts: all that are waiting go in one script call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.exceptions import RedisError

from ._outage import Outage
from ._scripts import Outcome, Scripts

log = logging.getLogger("aiotaskq")

_MAX_BATCH = 500
_QUIET = 0.002  # seconds


class Finisher:
    """Collects outcomes; one settle.lua call records every outcome that is waiting.

    An outcome is kept and retried while Redis is unreachable; settle.lua is
    fenced, so recording one twice (a reply lost with the connection) is harmless.

    Woken after an idle spell of more than ``_QUIET`` seconds, it first awaits
    ``after_idle`` (the runner's claims in flight): jobs that end together free slots and
    submit outcomes at the same moment, and a Redis woken from a quiet spell tends to read
    the claim and the settle together and answers them only once it has run both, so the
    settle would hold back the next jobs. While outcomes keep coming (a busy pool), it
    writes without waiting: a busy Redis runs the claim as it arrives, and waiting would
    only make the settle collide with the next claim instead.
    """

    def __init__(self, scripts: Scripts, after_idle: Callable[[], Awaitable[None]]) -> None:
        self.scripts = scripts
        self._after_idle = after_idle
        self._waiting: deque[Outcome] = deque()
        self._arrived = asyncio.Event()
        self._closed = False
        self.pending = 0
        self.pending_ids: set[str] = set()  # jobs whose outcome is not written yet (still in the pool set)
        self.done = asyncio.Event()  # set when run() has written everything and returned

    def submit(self, outcome: Outcome) -> None:
        self.pending += 1
        self.pending_ids.add(outcome.id)
        self._waiting.append(outcome)
        self._arrived.set()

    def close(self) -> None:
        """No more outcomes: ``run`` returns once it wrote what it holds."""
        self._closed = True
        self._arrived.set()

    async def run(self) -> None:
        waiting = self._waiting
        try:
            while True:
                if not waiting:
                    if self._closed:
                        return
                    self._arrived.clear()
                    idle_since = time.monotonic()
                    await self._arrived.wait()
                    if time.monotonic() - idle_since > _QUIET:
                        await self._after_idle()
                    continue
                batch = [waiting.popleft() for _ in range(min(len(waiting), _MAX_BATCH))]
                await self._write(batch)
                self.pending -= len(batch)
                self.pending_ids.difference_update(o.id for o in batch)
        finally:
            self.done.set()

    async def _write(self, batch: list[Outcome]) -> None:
        call = self.scripts.settle(batch)
        outage = Outage(f"recording {len(batch)} job outcome(s)")
        while True:
            try:
                codes = await self.scripts.run(call)
                outage.ok()
                break
            except (RedisError, OSError) as exc:
                await anyio.sleep(outage.failed(exc))
        for outcome, code in zip(batch, codes, strict=True):
            _check(outcome, code)


def _check(outcome: Outcome, code: Any) -> None:
    if code == -1:
        log.warning(
            "outcome of job %r dropped: this pool no longer owns that attempt (it was declared dead "
            "and the job requeued, or a re-sent call had already recorded it)",
            outcome.id,
        )
