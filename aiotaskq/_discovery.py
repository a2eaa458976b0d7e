"""Where a queue's master is, when a URL names more than one server (a Redis Cluster's nodes,
Sentinel's sentinels): a :class:`Master` finds the address, and the queue's connections
(:class:`MasterConnection`) ask it where to go each time they connect.

It looks again when told to (``suspect()``: a lost connection, CLUSTERDOWN, READONLY: a
failover may have moved the master), at most every 0.2 s while calls keep failing; a MOVED
reply names the new address itself (``moved()``). redis-py's own retry of a failed command
reconnects, so that retry already reaches the new master.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import RedisError

from .errors import AiotaskqError

_REFRESH_EVERY = 0.2  # seconds: at most one round of questions per interval while failing


def parse_hosts(hosts: str, what: str) -> list[tuple[str, int]]:
    """``h1:p1,h2:p2,[::1]:p3`` -> [(host, port)...]; ValueError naming ``what`` (the URL's kind)."""
    out: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"{what} URL: {item.strip()!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return out


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MasterUnknown(AiotaskqError, RedisError):
    """No server the queue knows of says where its master is (all unreachable, the cluster
    down, no master elected yet). A ``redis.exceptions.RedisError``: pools retry it as a lost
    connection, and the next call asks again."""


class Master:
    """The address of a queue's master, found by :meth:`_find` and kept up to date."""

    def __init__(self, first: tuple[str, int]) -> None:
        self.address = first
        self.connect_kwargs: dict[str, Any] = {}  # credentials, TLS and timeouts for the questions
        self._stale = True
        self._found = False
        self._last = 0.0
        self._lock = asyncio.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> Master:
        return self  # one for all the queue's connections (redis-py deep-copies each one's Retry)

    def moved(self, host: str, port: int) -> None:
        """The master is at host:port now (a cluster node answered MOVED)."""
        self.address, self._stale, self._found = (host, port), False, True

    def follows(self, slot: int) -> bool:
        """Whether a MOVED for ``slot`` means this master moved (the queue's own slot)."""
        return False

    def suspect(self) -> None:
        """A call failed in a way that may mean the master changed: look again before the next connection."""
        self._stale = True

    async def current(self) -> tuple[str, int]:
        """The address to connect to. Until the first answer, every caller waits for one (the
        address it started from is only where to ask: a sentinel, a seed node)."""
        if self._stale:
            async with self._lock:  # a caller that comes while another asks waits for its answer
                if self._stale and (not self._found or time.monotonic() - self._last >= _REFRESH_EVERY):
                    self._last = time.monotonic()
                    self.address = await self._find()
                    self._stale, self._found = False, True
        return self.address

    async def _find(self) -> tuple[str, int]:
        raise NotImplementedError


class _ToMaster:
    """A connection that goes to its Master's current address each time it connects."""

    host: str
    port: int
    master: Master

    def __init__(self, *, master: Master, **kwargs: Any) -> None:
        self.master = master
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.master.current()
        try:
            await super()._connect()  # type: ignore[misc]
        except (TimeoutError, OSError, RedisError):
            self.master.suspect()  # (redis-py connects outside the Retry that would say so)
            raise


class MasterConnection(_ToMaster, Connection):
    pass


class MasterSSLConnection(_ToMaster, SSLConnection):
    pass
