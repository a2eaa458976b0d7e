"""A pool's presence on one queue, and the fast reaper of pools whose process died.

Every ``tick`` (half a second, or the heartbeat interval when shorter) the pool runs
presence.lua over a Redis connection of its own: it stays alive for one and a half ticks
(the hand-off gives jobs only to pools alive by that time), and records which connection
it holds, as the Redis server's run id and the connection's ``CLIENT ID``. The kernel
closes every connection of a process that dies (SIGKILL, an OOM kill, a crash), and Redis
sees it at once. So a pool that missed its ticks *and* whose connection is gone is dead: the
tick of any other pool finds it (presence.lua names the pools past their alive time;
``CLIENT LIST ID`` says whether their connections exist) and reaps it within about two
seconds, instead of waiting ``stale_timeout`` for its heartbeat to age.

A pool that is alive but busy, blocked for a while or cut off by a silent partition keeps
its connection, so it is judged by its heartbeat's age alone, as before. What cannot be told
apart from a crash is a cut that closes the connections on Redis's side (a proxy restarting,
say) for longer than the grace: that pool is reaped, its jobs run elsewhere, and its own
outcomes are fenced out when it comes back (``Pool(crash_detection=False)`` turns it off).
After a Redis restart or failover the run id differs, so records of the old run are ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError, ResponseError

from ._scripts import Scripts

if TYPE_CHECKING:
    from ._runner import QueueRunner

log = logging.getLogger("aiotaskq")

_TICK = 0.5  # seconds between ticks, at most


class Presence:
    """The tick loop of one pool on one queue (see the module's docstring)."""

    def __init__(self, runner: QueueRunner, *, detect: bool) -> None:
        self.runner = runner
        self.tick = min(_TICK, runner.pool.heartbeat_interval)
        self.alive_ms = round(self.tick * 1500)  # one and a half ticks
        self.grace_ms = round(self.tick * 2000)  # past that: two more ticks missed
        self.detect = detect
        self._client: Redis | None = None
        self._scripts: Scripts | None = None
        self._conn: tuple[int, str] | None = None  # (CLIENT ID, server run id) of our connection
        self._recorded: tuple[str, str] | None = None  # (pool id, record) presence.lua stored

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick_once()
                except (RedisError, OSError) as exc:  # Redis away: the heartbeat loop says so
                    log.debug("presence tick on queue %r failed: %s", self.runner.queue.name, exc)
                except Exception:  # a surprise here must not stop the pool: fall back to heartbeats
                    log.exception("presence tick on queue %r failed; crash detection is off", self.runner.queue.name)
                    self.detect = False
                await anyio.sleep(self.tick)
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    async def tick_once(self) -> None:
        """Tick once; reap the pools found dead."""
        client, scripts = self._connection()
        record = await self._record(client) if self.detect else ""
        pool_id = self.runner.pool_id
        fresh = record if self._recorded != (pool_id, record) else ""
        registered, suspects = await scripts.presence(pool_id, self.alive_ms, fresh, self.grace_ms)
        if not registered:
            return  # declared dead: the heartbeat registers the pool afresh
        if fresh:
            self._recorded = (pool_id, record)
        if suspects and self.detect:
            gone = await self._gone(client, suspects)
            if gone:
                await self.runner.reap(suspects=gone, grace_ms=self.grace_ms)

    async def _record(self, client: Redis) -> str:
        """ "<run id>:<client id>" of our connection ('' when Redis refuses to say)."""
        try:
            cid = int(await client.client_id())
            if self._conn is None or self._conn[0] != cid:
                run_id = (await client.info("server")).get("run_id")
                if not run_id:  # a Redis-compatible server that does not say
                    raise ResponseError("INFO server gave no run_id")
                self._conn = (cid, str(run_id))
        except ResponseError as exc:  # NOPERM, or a managed Redis without CLIENT/INFO
            self._disable(exc)
            return ""
        return f"{self._conn[1]}:{self._conn[0]}"

    async def _gone(self, client: Redis, suspects: list[tuple[str, str]]) -> list[str]:
        """The suspects whose recorded connection, on this run of the server, is gone."""
        if self._conn is None:
            return []
        ids: dict[str, str] = {}
        for pool_id, record in suspects:
            run_id, _, cid = record.rpartition(":")
            if run_id == self._conn[1] and cid.isdigit():
                ids[pool_id] = cid
        if not ids:
            return []
        try:
            present = {str(c.get("id")) for c in await client.client_list(client_id=list(ids.values()))}
        except ResponseError as exc:
            self._disable(exc)
            return []
        return [pool_id for pool_id, cid in ids.items() if cid not in present]

    def _disable(self, exc: ResponseError) -> None:
        self.detect = False
        log.warning(
            "queue %r: crash detection is off (Redis refused CLIENT ID, CLIENT LIST or INFO: %s); "
            "a dead pool is found by its heartbeat's age alone (stale_timeout %.0fs)",
            self.runner.queue.name, exc, self.runner.pool.stale_timeout,
        )  # fmt: skip

    def _connection(self) -> tuple[Redis, Scripts]:
        """Our own connection, made like the queue's (a shared client's pool cannot lend one
        for good), reconnected by redis-py on the next tick after it was lost."""
        if self._client is None or self._scripts is None:
            base = self.runner.queue.redis.connection_pool
            pool = ConnectionPool(connection_class=base.connection_class, max_connections=1, **base.connection_kwargs)
            self._client = Redis(connection_pool=pool, single_connection_client=True)
            self._scripts = Scripts(self._client, self.runner.queue.keys)
        return self._client, self._scripts

    async def close(self) -> None:
        client, self._client, self._scripts = self._client, None, None
        if client is not None:
            try:
                await client.aclose()
                await client.connection_pool.disconnect()
            except (RedisError, OSError) as exc:
                log.debug("closing the presence connection failed: %s", exc)
