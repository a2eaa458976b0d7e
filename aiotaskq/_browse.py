"""Reading many jobs at once, for the admin commands (and the dashboard): their records by
id, and a page of the jobs in a status, optionally of one task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._record import fields as job_fields
from ._shards import job_shard
from .job import JobInfo, JobStatus, info_from_hash
from .queue import Queue

_CHUNK = 500  # ids per pipelined round trip


async def infos(queue: Queue, ids: Sequence[str]) -> list[JobInfo | None]:
    """The ``JobInfo`` of each id (None for a job that does not exist)."""
    return [
        None if h is None else info_from_hash(job_id, h)
        for job_id, h in zip(ids, await fields(queue, ids), strict=True)
    ]


async def fields(queue: Queue, ids: Sequence[str]) -> list[dict[bytes, bytes] | None]:
    """The stored fields of each job (see _record.py; None for one that does not exist), read
    shard by shard in pipelined chunks: three reads per job (its record, active entry and ended
    record)."""
    out: list[dict[bytes, bytes] | None] = [None] * len(ids)
    by_shard: dict[int, list[int]] = {}
    parts = queue.parts
    for i, job_id in enumerate(ids):
        by_shard.setdefault(job_shard(job_id, len(parts)) if len(parts) > 1 else 0, []).append(i)
    for k, where in by_shard.items():
        part = parts[k]
        for start in range(0, len(where), _CHUNK):
            chunk = where[start : start + _CHUNK]
            pipe = part.redis.pipeline(transaction=False)
            for i in chunk:
                pipe.hget(part.keys.jobs, ids[i])
                pipe.hget(part.keys.active, ids[i])
                pipe.get(part.keys.job(ids[i]))
            raw: list[Any] = await pipe.execute()
            for n, i in enumerate(chunk):
                out[i] = job_fields(raw[3 * n], raw[3 * n + 1], raw[3 * n + 2])
    return out


@dataclass(frozen=True)
class Page:
    jobs: list[JobInfo]
    scanned: int  # ids looked at
    next: int | None  # the offset to read the next page from; None: the status holds no more

    @property
    def more(self) -> bool:
        return self.next is not None


async def find(
    queue: Queue, status: JobStatus, *, task: str | None = None, limit: int = 100, offset: int = 0, scan: int = 100_000
) -> Page:
    """Up to ``limit`` jobs in ``status``, reading its ids (in ``job_ids`` order) from position
    ``offset``. With ``task``, only that task's jobs: the ids are read a chunk at a time and
    their records filtered (no index by task exists), ``scan`` ids at most; ``Page.next`` is
    where to go on from, for the next page as for a scan cut short."""
    if task is None:
        ids = await queue.job_ids(status, limit=limit + 1, offset=offset)
        found = [i for i in await infos(queue, ids[:limit]) if i is not None]
        return Page(found, len(ids[:limit]), offset + limit if len(ids) > limit else None)
    matches: list[JobInfo] = []
    pos, end = offset, offset + scan
    while pos < end:
        want = min(_CHUNK, end - pos)
        ids = await queue.job_ids(status, limit=want, offset=pos)
        for i, info in enumerate(await infos(queue, ids)):
            if info is not None and info.task == task:
                matches.append(info)
                if len(matches) == limit:
                    return Page(matches, pos + i + 1 - offset, pos + i + 1)
        pos += len(ids)
        if len(ids) < want:
            return Page(matches, pos - offset, None)
    return Page(matches, pos - offset, pos)


RATED = ("enqueued", "succeeded", "failed", "retried", "cancelled")
SLOT_SECONDS = 10  # the scripts count per 10 s slot (count_rates in _lib.lua)


@dataclass(frozen=True)
class Rates:
    start: int  # epoch seconds of the first slot
    counts: dict[str, list[int]]  # counter -> jobs in each 10 s slot, oldest first


async def rates(queue: Queue, *, seconds: int = 3600, counters: Sequence[str] = RATED) -> Rates:
    """How many jobs were enqueued, succeeded, failed, retried and cancelled in each 10 s of
    the last ``seconds`` (two hours at most: the slots expire), all shards summed. One MGET
    per shard; the slot in progress is the last."""
    sec, _ = await queue.parts[0].redis.time()
    last = int(sec) // SLOT_SECONDS
    n = max(1, min(seconds, 7200) // SLOT_SECONDS)
    slots = range(last - n + 1, last + 1)
    totals = {c: [0] * n for c in counters}
    for part in queue.parts:
        keys = [part.keys.rate(c, s) for c in counters for s in slots]
        values = await part.redis.mget(keys)
        for i, raw in enumerate(values):
            if raw:
                totals[counters[i // n]][i % n] += int(raw)
    return Rates(slots[0] * SLOT_SECONDS, totals)


async def delete(queue: Queue, ids: Sequence[str]) -> int:
    """Delete ended jobs (succeeded, failed, cancelled) by id, with their data; a job still
    pending or running is left alone (cancel it). Returns how many were deleted."""
    by_shard: dict[int, list[str]] = {}
    for job_id in ids:
        by_shard.setdefault(job_shard(job_id, queue.shards) if queue.shards > 1 else 0, []).append(job_id)
    total = 0
    for k, shard_ids in by_shard.items():
        scripts = queue.parts[k].scripts
        for start in range(0, len(shard_ids), _CHUNK):
            total += await scripts.delete(shard_ids[start : start + _CHUNK])
    return total
