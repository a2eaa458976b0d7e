"""Writes the outcomes of finished attempts, pipelining those that end together."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from redis.exceptions import RedisError

from ._scripts import Call, Scripts

log = logging.getLogger("aiotaskq")

_MAX_BATCH = 500


class Finisher:
    """Collects outcome calls; one pipelined round trip writes all that are waiting.

    An outcome is kept and retried while Redis is unreachable; the scripts are
    fenced, so writing one twice (a reply lost with the connection) is harmless.
    """

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self._send, self._recv = anyio.create_memory_object_stream[Call](max_buffer_size=math.inf)
        self.pending = 0
        self.pending_ids: set[str] = set()  # jobs whose outcome is not written yet (still in the pool set)
        self.done = anyio.Event()  # set when run() has written everything and returned

    def submit(self, call: Call) -> None:
        self.pending += 1
        self.pending_ids.add(str(call.args[0]))
        self._send.send_nowait(call)

    def close(self) -> None:
        """No more outcomes: ``run`` returns once it wrote what it holds."""
        self._send.close()

    async def run(self) -> None:
        try:
            async with self._recv:
                async for call in self._recv:
                    batch = [call]
                    while len(batch) < _MAX_BATCH:
                        try:
                            batch.append(self._recv.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self._write(batch)
                    self.pending -= len(batch)
                    self.pending_ids.difference_update(str(c.args[0]) for c in batch)
        finally:
            self.done.set()

    async def _write(self, batch: list[Call]) -> None:
        delay = 0.05
        while True:
            try:
                results = await self.scripts.run_many(batch)
                break
            except (RedisError, OSError) as exc:
                log.warning("could not record %d job outcome(s) (%s); retrying in %.2fs", len(batch), exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for call, res in zip(batch, results, strict=True):
            _check(call, res)


def _check(call: Call, res: Any) -> None:
    job_id = call.args[0]
    if isinstance(res, Exception):
        log.error("recording the outcome of job %r failed: %s", job_id, res)
    elif res == -1:
        log.warning(
            "outcome of job %r dropped: this pool no longer owns that attempt (it was declared dead "
            "and the job was requeued)",
            job_id,
        )
