"""A pool's free worker slots, shared by its claim loops."""

from __future__ import annotations

import asyncio


class Slots:
    """Free worker slots shared by a pool's claim loops. (Plain asyncio primitives on
    the per-job path: anyio's cost more than the rest of a no-op job's bookkeeping.)"""

    def __init__(self, n: int) -> None:
        self.free = n
        self._changed = asyncio.Event()

    def take(self) -> None:
        self.free -= 1

    def give(self) -> None:
        self.free += 1
        self._changed.set()

    def reserve(self, n: int) -> None:
        """Hold ``n`` slots for a claim in flight (its jobs start in them)."""
        self.free -= n

    def release(self, n: int) -> None:
        """Return reserved slots that the claim's jobs did not take."""
        if n:
            self.free += n
            self._changed.set()

    async def wait_free(self) -> int:
        while self.free <= 0:
            self._changed.clear()
            await self._changed.wait()
        return self.free
