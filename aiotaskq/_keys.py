"""Every Redis key and channel name of a queue is built here, and only here.

All names of queue ``Q`` start with ``aiotaskq:{Q}:``. The braces are a Redis
Cluster hash tag: every key of one queue lives in one hash slot, so each Lua
script may touch any of them. A shard of a sharded queue has a tag of its own
(see _shards.py).
"""

from __future__ import annotations

from typing import Final

from ._shards import RESERVED

PREFIX: Final = "aiotaskq"


def validate_queue_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("name: a queue name must be a non-empty string")
    if "{" in name or "}" in name:
        raise ValueError(f"name: a queue name may not contain braces, got {name!r}")
    if RESERVED.search(name):
        raise ValueError(f"name: a name ending in '#<k>/<n>' is reserved for the shards of a queue, got {name!r}")
    return name


class Keys:
    """Key and channel names of one queue (or of one shard of a queue: ``tag``)."""

    __slots__ = (
        "abort",
        "active",
        "alive",
        "cancelled",
        "failed",
        "held",
        "idle",
        "jobs",
        "keep",
        "keylimits",
        "limits",
        "paused",
        "pools",
        "prefix",
        "presence",
        "queued",
        "scheduled",
        "schedules",
        "schedules_last",
        "schedules_next",
        "schedules_wake",
        "stats",
        "succeeded",
        "tasks",
    )

    def __init__(self, queue: str, tag: str | None = None) -> None:
        p = f"{PREFIX}:{{{tag or validate_queue_name(queue)}}}:"
        self.prefix = p
        self.scheduled = p + "scheduled"  # zset: due time ms -> id
        self.queued = p + "queued"  # zset: priority bands that hold jobs, scored -priority (see band())
        self.idle = p + "idle"  # zset: idle pool id -> free slots it registered (see claim.lua)
        self.pools = p + "pools"  # zset: pool id -> last heartbeat ms
        self.alive = p + "alive"  # zset: pool id -> ms until which it counts as alive (presence ticks)
        self.presence = p + "presence"  # hash: pool id -> "<redis run id>:<client id>" of its presence connection
        self.succeeded = p + "succeeded"  # zsets: end time ms -> id
        self.failed = p + "failed"
        self.cancelled = p + "cancelled"
        self.stats = p + "stats"  # hash: counters
        self.jobs = p + "jobs"  # hash: job id -> record, while scheduled, queued or active
        self.active = p + "active"  # hash: job id -> active entry (pool, attempt, start...), while active
        self.tasks = p + "tasks"  # hash: task name -> default max retries (written by pools)
        self.keep = p + "keep"  # hash: task name -> keep ms of its ended jobs, -1 forever (written by pools)
        self.paused = p + "paused"  # string: present while the queue is paused (pause.lua)
        self.limits = p + "limits"  # hash: task name -> 'N/period ms', its rate limit (written by pools)
        self.keylimits = p + "keylimits"  # hash: task name -> K, its key_concurrency (written by pools)
        # zset: a gate -> ms it opens, while jobs wait in its held list: a rate-limited task (its
        # next window), or a key's gate (0: open, +inf: full; see key_admit in _lib.lua)
        self.held = p + "held"
        self.abort = p + "abort"  # channel: job id whose running attempt must stop
        self.schedules = p + "schedules"  # hash: schedule key -> spec (msgpack)
        self.schedules_next = p + "schedules:next"  # zset: schedule key -> next run ms
        self.schedules_last = p + "schedules:last"  # hash: schedule key -> tick ms of its last job
        self.schedules_wake = p + "schedules:wake"  # channel: a schedule was added or changed

    def job(self, job_id: str) -> str:
        """String holding the record of one ended job (see _record.py)."""
        return f"{self.prefix}job:{job_id}"

    def band(self, priority: int | str) -> str:
        """List of the jobs waiting at one priority, in FIFO order."""
        return f"{self.prefix}queued:{priority}"

    def pool(self, pool_id: str) -> str:
        """Set of the job ids a pool holds."""
        return f"{self.prefix}pool:{pool_id}"

    def inbox(self, pool_id: str) -> str:
        """List of the jobs handed to an idle pool (records), and empty wake-up entries."""
        return f"{self.prefix}inbox:{pool_id}"

    def pool_info(self, pool_id: str) -> str:
        """String (JSON) describing a live pool, expiring with its heartbeat."""
        return f"{self.prefix}pool:{pool_id}:info"

    def done(self, job_id: str) -> str:
        """Channel on which a job's end state is published."""
        return f"{self.prefix}done:{job_id}"

    def held_list(self, gate: str) -> str:
        """List of the jobs waiting at a gate (FIFO): a rate-limited task's that found no start
        left in their window, or a key's that found its running jobs at the task's key_concurrency."""
        return f"{self.prefix}held:{gate}"

    def running(self, task: str, key: str) -> str:
        """Set of the active jobs of ``task`` with concurrency key ``key``."""
        return f"{self.prefix}running:\0{task}\0{key}"

    def rate(self, counter: str, slot: int) -> str:
        """String: how many jobs were ``counter`` (enqueued, succeeded, failed, retried,
        cancelled) in the 10 s slot ``slot`` (epoch ms // 10000); kept two hours (see _lib.lua)."""
        return f"{self.prefix}rate:{counter}:{slot}"

    def ended(self, status: str) -> str:
        """Zset of the jobs in an end state, by end time."""
        return self.prefix + status
