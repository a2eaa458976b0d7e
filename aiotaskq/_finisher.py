"""Records the outcomes of finished attempts: all that are waiting go in one script call."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from redis.exceptions import RedisError

from ._scripts import Outcome, Scripts

log = logging.getLogger("aiotaskq")

_MAX_BATCH = 500


class Finisher:
    """Collects outcomes; one settle.lua call records every outcome that is waiting.

    An outcome is kept and retried while Redis is unreachable; settle.lua is
    fenced, so recording one twice (a reply lost with the connection) is harmless.
    """

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self._send, self._recv = anyio.create_memory_object_stream[Outcome](max_buffer_size=math.inf)
        self.pending = 0
        self.pending_ids: set[str] = set()  # jobs whose outcome is not written yet (still in the pool set)
        self.done = anyio.Event()  # set when run() has written everything and returned

    def submit(self, outcome: Outcome) -> None:
        self.pending += 1
        self.pending_ids.add(outcome.id)
        self._send.send_nowait(outcome)

    def close(self) -> None:
        """No more outcomes: ``run`` returns once it wrote what it holds."""
        self._send.close()

    async def run(self) -> None:
        try:
            async with self._recv:
                async for outcome in self._recv:
                    batch = [outcome]
                    while len(batch) < _MAX_BATCH:
                        try:
                            batch.append(self._recv.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self._write(batch)
                    self.pending -= len(batch)
                    self.pending_ids.difference_update(o.id for o in batch)
        finally:
            self.done.set()

    async def _write(self, batch: list[Outcome]) -> None:
        call = self.scripts.settle(batch)
        delay = 0.05
        while True:
            try:
                codes = await self.scripts.run(call)
                break
            except (RedisError, OSError) as exc:
                log.warning("could not record %d job outcome(s) (%s); retrying in %.2fs", len(batch), exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for outcome, code in zip(batch, codes, strict=True):
            _check(outcome, code)


def _check(outcome: Outcome, code: Any) -> None:
    if code == -1:
        log.warning(
            "outcome of job %r dropped: this pool no longer owns that attempt (it was declared dead "
            "and the job requeued, or a re-sent call had already recorded it)",
            outcome.id,
        )
