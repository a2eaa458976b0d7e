"""A queue on a Redis Cluster: its client talks to the one master that serves its hash slot.

Every key of a queue shares the hash tag ``{name}``, so the whole queue lives in one slot on
one master, and a cluster client's routing adds nothing but its limits (redis-py forbids
pipelined EVALSHA on a cluster, and its cluster pub/sub is missing before redis-py 6). So the
queue keeps a plain client, whose connections all go to the slot's master: scripts,
pipelines, blocking pops and pub/sub work as on a single Redis.

Which master that is, a :class:`SlotOwner` finds with ``CLUSTER SLOTS``, asking the nodes it
knows (the URL's, then every node a reply named). It looks again when a node answers
``MOVED`` (the reply names the new owner: it is taken at once), ``CLUSTERDOWN`` or
``TRYAGAIN``, or when a connection fails (a master died: after the cluster's node timeout its
replica takes over); each connection asks it where to go as it (re)connects, so redis-py's
own retry of a failed command already reaches the new master.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import RedisError

from .errors import AiotaskqError

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_REFRESH_EVERY = 0.2  # seconds: at most one CLUSTER SLOTS round per interval while failing


class ClusterUnavailable(AiotaskqError, RedisError):
    """No node the queue knows of says which master serves its slot (all unreachable, or the
    cluster is down). A ``redis.exceptions.RedisError``: pools retry it as a lost connection."""


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``redis+cluster://[user:pw@]h1:p1,h2:p2[/0][?query]`` -> (a plain URL for the first node
    with the same credentials and options, every seed node). ValueError when it does not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a cluster URL (expected {' or '.join(s + '://' for s in SCHEMES)})")
    netloc, slash, tail = rest.partition("/")
    if "?" in netloc:  # redis+cluster://h:p?query
        netloc, _, query = netloc.partition("?")
        tail, slash = "?" + query, "/"
    userinfo, at, hosts = netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"cluster URL: {item.strip()!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    db = tail.partition("?")[0]
    if db not in ("", "0"):
        raise ValueError(f"cluster URL: a Redis Cluster has database 0 only, not {db!r}")
    first_host, first_port = seeds[0]
    first_host = f"[{first_host}]" if ":" in first_host else first_host
    plain = f"{SCHEMES[scheme]}://{userinfo}{at}{first_host}:{first_port}{slash}{tail}"
    return plain, seeds


class SlotOwner:
    """The address of the master serving ``slot``, found from ``seeds`` and kept up to date."""

    def __init__(self, seeds: list[tuple[str, int]], slot: int, connect_kwargs: dict[str, Any]) -> None:
        self.slot = slot
        self.address = seeds[0]
        self.known: list[tuple[str, int]] = list(seeds)
        self.connect_kwargs = connect_kwargs  # credentials, TLS and timeouts for the CLUSTER SLOTS calls
        self._stale = True
        self._last = 0.0
        self._lock = asyncio.Lock()

    def moved(self, host: str, port: int) -> None:
        """A node answered MOVED: the slot is served at host:port now."""
        self.address = (host, port)
        if (host, port) not in self.known:
            self.known.append((host, port))
        self._stale = False

    def suspect(self) -> None:
        """A call failed in a way that may mean the master changed: look again before the next connection."""
        self._stale = True

    async def current(self) -> tuple[str, int]:
        if self._stale and time.monotonic() - self._last >= _REFRESH_EVERY:
            async with self._lock:
                if self._stale and time.monotonic() - self._last >= _REFRESH_EVERY:
                    await self._refresh()
        return self.address

    async def _refresh(self) -> None:
        self._last = time.monotonic()
        errors: list[str] = []
        for host, port in [self.address, *(a for a in self.known if a != self.address)]:
            client = Redis(host=host, port=port, **self.connect_kwargs)
            try:
                slots = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (RedisError, OSError) as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            finally:
                await client.aclose()
            owner = self._owner(slots)
            if owner is not None:
                self.address, self._stale = owner, False
                return
            errors.append(f"{host}:{port}: no master for slot {self.slot}")
        raise ClusterUnavailable(f"no cluster node says which master serves slot {self.slot}: " + "; ".join(errors))

    def _owner(self, slots: Any) -> tuple[str, int] | None:
        found = None
        for lo, hi, master, *replicas in slots:
            for node in (master, *replicas):
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                address = (host or self.address[0], int(node[1]))
                if address not in self.known:
                    self.known.append(address)
            if int(lo) <= self.slot <= int(hi):
                host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
                found = (host or self.address[0], int(master[1]))
        return found


class _ToSlotOwner:
    """A connection that goes to the slot owner's current address each time it connects."""

    host: str
    port: int
    owner: SlotOwner

    def __init__(self, *, owner: SlotOwner, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.owner.current()
        try:
            await super()._connect()  # type: ignore[misc]
        except (TimeoutError, OSError, RedisError):
            self.owner.suspect()  # (redis-py connects outside the Retry that would say so)
            raise


class SlotOwnerConnection(_ToSlotOwner, Connection):
    pass


class SlotOwnerSSLConnection(_ToSlotOwner, SSLConnection):
    pass


def slot_of(prefix: str) -> int:
    return int(key_slot(prefix.encode()))
