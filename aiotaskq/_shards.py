"""Sharded queues: which hash slots a queue's shards live in, and which shard holds a job.

A queue declared with ``shards=N`` (N > 1) is N sub-queues, each a whole queue keyspace
in its own hash slot (``aiotaskq:{<name>#<k>/<N>...}:``). Shard ``k``'s hash tag is chosen
so that its slot lies in the k-th of N equal ranges of the 16,384 slots: with a cluster's
even slot layout and as many shards as masters, each master holds one shard.

A job lives in the shard its id hashes to (CRC-32 modulo N), so that a lookup by id finds
it and a job id given at enqueue deduplicates across the whole queue; a schedule's ticks
live in the shard of the schedule's key, which is also where the id of a tick's job
(``schedule:<key>:<ms>``) hashes to. The tags include N: a queue declared with another
number of shards is a different keyspace (see docs/scaling.md on changing it).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import Final

from redis.crc import key_slot

MAX_SHARDS: Final = 256
SLOTS: Final = 16384
_SCHEDULE_PREFIX: Final = "schedule:"
RESERVED: Final = re.compile(r"#\d+/\d+(\.\d+)?$")  # the ending of a shard's tag


def check_shards(shards: int) -> int:
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards: must be an integer from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


@lru_cache(maxsize=64)
def shard_tags(name: str, n: int) -> tuple[str, ...]:
    """The hash tags of the N shards of queue ``name``; just ``name`` for one shard."""
    if n == 1:
        return (name,)
    tags = []
    for k in range(n):
        lo, hi = k * SLOTS // n, (k + 1) * SLOTS // n
        base = f"{name}#{k}/{n}"
        tag, s = base, 0
        while not lo <= key_slot(tag.encode()) < hi:
            s += 1
            tag = f"{base}.{s}"
        tags.append(tag)
    return tuple(tags)


def key_shard(key: str, n: int) -> int:
    """The shard of a schedule key (and of anything routed by a string)."""
    return zlib.crc32(key.encode()) % n


def job_shard(job_id: str, n: int) -> int:
    """The shard of a job id: a schedule's tick job goes with its schedule."""
    if job_id.startswith(_SCHEDULE_PREFIX):
        key, sep, tick = job_id[len(_SCHEDULE_PREFIX) :].rpartition(":")
        if sep and tick.isdigit():
            return key_shard(key, n)
    return zlib.crc32(job_id.encode()) % n
