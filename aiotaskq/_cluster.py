"""A queue on a Redis Cluster: its client talks to the one master that serves its hash slot.

Every key of a queue shares the hash tag ``{name}``, so the whole queue lives in one slot on
one master, and a cluster client's routing adds nothing but its limits (redis-py forbids
pipelined EVALSHA on a cluster, and its cluster pub/sub is missing before redis-py 6). So the
queue keeps a plain client, whose connections all go to the slot's master: scripts,
pipelines, blocking pops and pub/sub work as on a single Redis.

Which master that is, a :class:`SlotOwner` finds with ``CLUSTER SLOTS``, asking the nodes it
knows (the URL's, then every node a reply named); see _discovery.py for when it looks again.
After a master dies, the cluster's node timeout passes before its replica takes over.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from ._discovery import Master, MasterUnknown, host_port, parse_hosts

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


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
    seeds = parse_hosts(hosts, "cluster")
    db = tail.partition("?")[0]
    if db not in ("", "0"):
        raise ValueError(f"cluster URL: a Redis Cluster has database 0 only, not {db!r}")
    plain = f"{SCHEMES[scheme]}://{userinfo}{at}{host_port(*seeds[0])}{slash}{tail}"
    return plain, seeds


class SlotOwner(Master):
    """The master serving ``slot``, found with CLUSTER SLOTS from ``seeds`` and every node a
    reply named."""

    def __init__(self, seeds: list[tuple[str, int]], slot: int) -> None:
        super().__init__(seeds[0])
        self.slot = slot
        self.known: list[tuple[str, int]] = list(seeds)

    def follows(self, slot: int) -> bool:
        return slot == self.slot

    def moved(self, host: str, port: int) -> None:
        super().moved(host, port)
        if (host, port) not in self.known:
            self.known.append((host, port))

    async def _find(self) -> tuple[str, int]:
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
                return owner
            errors.append(f"{host}:{port}: no master for slot {self.slot}")
        raise MasterUnknown(f"no cluster node says which master serves slot {self.slot}: " + "; ".join(errors))

    def _owner(self, slots: Any) -> tuple[str, int] | None:
        found = None
        for lo, hi, master, *replicas in slots:
            for node in (master, *replicas):
                address = (_text(node[0]) or self.address[0], int(node[1]))
                if address not in self.known:
                    self.known.append(address)
            if int(lo) <= self.slot <= int(hi):
                found = (_text(master[0]) or self.address[0], int(master[1]))
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def slot_of(prefix: str) -> int:
    return int(key_slot(prefix.encode()))
