"""How a pool's loops wait while Redis does not answer: one back-off for all of them.

The wait doubles from 0.05 s to 1 s. A failover is the common long outage, and its replica
takes over within the node timeout plus an election (1 to 3 s): a longer wait between tries
would only add to the time no job runs. A try per second is nothing to Redis; what would be
too much is a warning per try, so the first failure is a warning, later ones one warning every
30 s (the others go to the debug log), and the first success after them says so.
"""

from __future__ import annotations

import logging
import time
from typing import Final

log = logging.getLogger("aiotaskq")

FIRST: Final = 0.05
LONGEST: Final = 1.0
_WARN_EVERY: Final = 30.0


class Outage:
    """The back-off of one loop (``what`` names it in the log)."""

    __slots__ = ("_delay", "_failures", "_warned", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self._delay = FIRST
        self._failures = 0
        self._warned = 0.0

    def failed(self, exc: BaseException) -> float:
        """Log the failure (see the module); the seconds to wait before the next try."""
        delay = self._delay
        self._failures += 1
        now = time.monotonic()
        if self._failures == 1 or now - self._warned >= _WARN_EVERY:
            self._warned = now
            more = f" ({self._failures} tries so far)" if self._failures > 1 else ""
            log.warning("%s failed (%s); retrying in %.2fs%s", self.what, exc, delay, more)
        else:
            log.debug("%s failed (%s); retrying in %.2fs", self.what, exc, delay)
        self._delay = min(delay * 2, LONGEST)
        return delay

    def ok(self) -> None:
        """A try succeeded: the next failure starts the back-off afresh."""
        if self._failures > 1:
            log.info("%s works again after %d failed tries", self.what, self._failures)
        self._delay, self._failures = FIRST, 0
