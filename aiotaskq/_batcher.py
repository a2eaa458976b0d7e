"""Concurrent single enqueues on one queue, coalesced into few script calls.

A call that finds fewer than ``FLIGHTS`` enqueue.lua calls in flight goes out at once, from
the caller's own task: a lone call costs one round trip, as it would without this module.
Otherwise it waits, and the calls that arrived meanwhile leave together (up to ``MAX_JOBS``
jobs, ``MAX_BYTES`` of payload) the moment a call in flight returns: never on a timer. Each
caller gets its own code back, or the error of the call its job went out in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from ._scripts import EnqueueJob, Scripts

# Script calls in flight at once: while Redis runs one batch, the callers of the one before
# build the next. More would only take connections from the queue's other calls.
FLIGHTS: Final = 2
# Redis runs nothing else while a script runs: a batch stays a short script (enqueue_many's cap).
MAX_JOBS: Final = 100
MAX_BYTES: Final = 1 << 20

_Waiter = tuple[EnqueueJob, "asyncio.Future[int | bytes]"]


class Batcher:
    """The enqueue.lua calls of one queue, on one event loop."""

    def __init__(self, scripts: Scripts) -> None:
        self._scripts = scripts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._waiting: deque[_Waiter] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, job: EnqueueJob) -> int | bytes:
        """Enqueue one job: 1 written, 0 deduplicated, ``missing:<id>`` for a parent that is
        no job (see enqueue.lua)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a queue used again under a new loop: the old one's calls are gone
            self._loop, self._in_flight, self._waiting, self._tasks = loop, 0, deque(), set()
        if self._in_flight < FLIGHTS:
            self._in_flight += 1
            try:
                (code,) = await self._scripts.run(self._scripts.enqueue((job,)))
                return _code(code)
            finally:
                self._landed()
        waiter: asyncio.Future[int | bytes] = loop.create_future()
        self._waiting.append((job, waiter))
        return await waiter  # a cancelled waiter is skipped when its batch is made

    def _landed(self) -> None:
        """A call returned: send what waits, in the order it arrived."""
        if asyncio.get_running_loop() is not self._loop:  # a call of a loop given up (see enqueue)
            return
        self._in_flight -= 1
        while self._waiting and self._in_flight < FLIGHTS:
            batch = self._take()
            if batch:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._fly(batch), name="aiotaskq-enqueue")
                self._tasks.add(task)  # a reference until it ends
                task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Waiter]:
        batch: list[_Waiter] = []
        size = 0
        waiting = self._waiting
        while waiting and len(batch) < MAX_JOBS and size < MAX_BYTES:
            entry = waiting.popleft()
            if not entry[1].done():  # its caller was cancelled while it waited
                batch.append(entry)
                size += len(entry[0][2])
        return batch

    async def _fly(self, batch: list[_Waiter]) -> None:
        try:
            codes = await self._scripts.run(self._scripts.enqueue([job for job, _ in batch]))
        except BaseException as exc:  # the call's error is each of its callers' error
            for _, waiter in batch:
                if waiter.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    waiter.cancel()
                else:
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, waiter), code in zip(batch, codes, strict=True):
                if not waiter.done():
                    waiter.set_result(_code(code))
        finally:
            self._landed()


def _code(code: int | bytes) -> int | bytes:
    return code if isinstance(code, bytes) else int(code)
