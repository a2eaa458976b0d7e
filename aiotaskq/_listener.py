"""One pub/sub connection per queue client, shared by every waiter.

Callbacks are called with the message data, or with None after the connection
was lost and came back (messages may have been missed: look again).

On Redis 7 and later (Valkey 7.2 and later) the channels are shard channels (``SSUBSCRIBE``;
the scripts ``SPUBLISH`` by the same rule, see _lib.lua): on a cluster a message stays on the
shard that holds the queue's slot instead of crossing every node. redis-py 5 has no async
``ssubscribe``, so the listener sends the commands itself and subscribes again after every
reconnection; when the server drops a shard channel by itself (its slot moved, its master was
demoted) the listener reconnects to the queue's master and subscribes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("aiotaskq")

Callback = Callable[[bytes | None], None]

_TICK = 1.0  # longest wait for a message before the listener looks at the connection's health
_SILENCE = 5.0  # after this long without a message the listener sends a PING...
_PONG_WAIT = 5.0  # ...and reconnects if nothing at all came back this long after it


class Listener:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._subs: dict[bytes, list[Callback]] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pongs: dict[bytes, asyncio.Future[None]] = {}  # sync() tokens awaiting their PONG
        self._connecting = asyncio.Lock()
        self._sharded: bool | None = None  # shard channels (Redis >= 7): found out at the first connection
        self._leaving: Counter[bytes] = Counter()  # SUNSUBSCRIBEs sent, not answered yet
        self._moved = False  # the server dropped a shard channel still wanted
        self._reconnected = False
        self._clock = time.monotonic
        self._heard = 0.0  # when the connection last delivered anything
        self._pinged = False  # a PING sent since

    async def _connect(self) -> PubSub:
        """The pub/sub, connected (once: each concurrent first subscribe would take, and keep, a connection)."""
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        if self._pubsub.connection is None:
            async with self._connecting:
                if self._pubsub.connection is None:
                    if self._sharded is None:
                        self._sharded = await sharded_pubsub(self._redis)
                    await self._pubsub.connect()  # type: ignore[no-untyped-call]
                    assert self._pubsub.connection is not None
                    self._pubsub.connection.register_connect_callback(self._on_connect)
        return self._pubsub

    async def _send(self, *args: Any) -> None:
        """A command on the pub/sub connection, its reply left to the reading loop. (Sent as it
        is, past redis-py's retry: uvloop's error for a write to a closed connection is the
        ConnectionError it means here, as QueueRetry makes it elsewhere.)"""
        assert self._pubsub is not None and self._pubsub.connection is not None
        try:
            await self._pubsub.connection.send_command(*args, check_health=False)
        except RuntimeError as exc:
            if "handler is closed" not in str(exc):
                raise
            raise RedisConnectionError(f"connection closed by the server ({exc})") from None

    async def _on_connect(self, connection: Any) -> None:
        """After a reconnection: the shard channels again (redis-py subscribes the plain ones)."""
        self._leaving.clear()
        self._reconnected = True
        if self._sharded and self._subs:
            await connection.send_command("SSUBSCRIBE", *self._subs, check_health=False)

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Register ``callback``; returns once Redis confirmed the subscription."""
        ch = channel.encode()
        callbacks = self._subs.setdefault(ch, [])
        callbacks.append(callback)
        try:
            if len(callbacks) == 1:
                self._confirmed[ch] = asyncio.get_running_loop().create_future()
                pubsub = await self._connect()
                if self._sharded:
                    await self._send("SSUBSCRIBE", ch)
                else:
                    await pubsub.subscribe(ch)
                if self._task is None or self._task.done():
                    self._task = asyncio.create_task(self._run(), name="aiotaskq-listener")
            confirmed = self._confirmed.get(ch)
            if confirmed is not None:
                await asyncio.shield(confirmed)
        except BaseException:
            # Not subscribed (Redis away, or the caller gave up): forget the callback,
            # so that a later try subscribes again instead of waiting on this one.
            await self.unsubscribe(channel, callback)
            raise

    async def unsubscribe(self, channel: str, callback: Callback) -> None:
        ch = channel.encode()
        callbacks = self._subs.get(ch)
        if not callbacks:
            return
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        if not callbacks:
            del self._subs[ch]
            fut = self._confirmed.pop(ch, None)
            if fut is not None and not fut.done():
                fut.cancel()
            if self._pubsub is not None and self._pubsub.connection is not None:
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                    if self._sharded:
                        self._leaving[ch] += 1
                        await self._send("SUNSUBSCRIBE", ch)
                    else:
                        await self._pubsub.unsubscribe(ch)

    async def sync(self, timeout: float = 2.0) -> bool:
        """Wait until the messages Redis sent to this connection before the call have
        reached their callbacks: a PING on the pub/sub connection is answered after them.
        False when that could not be seen (not listening, Redis away, no answer in time)."""
        pubsub = self._pubsub
        if pubsub is None or self._task is None or self._task.done():
            return False
        token = secrets.token_hex(8).encode()
        fut = self._pongs[token] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._send("PING", token)
                await fut
            return True
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError):
            return False
        finally:
            self._pongs.pop(token, None)

    async def _run(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        delay = 0.05
        lost = False
        self._heard, self._pinged = self._clock(), False
        while True:
            try:
                msg = await self._read(pubsub)
            except Exception as exc:  # the listener must outlive any error: it reconnects
                self._heard, self._pinged = self._clock(), False
                if not isinstance(exc, RedisError | OSError):
                    log.error("pub/sub listener: unexpected error; reconnecting", exc_info=exc)
                elif not lost:
                    log.warning("pub/sub connection lost (%s); reconnecting", exc)
                lost = True
                if not isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError) and pubsub.connection:
                    await pubsub.connection.disconnect()  # an error reply: start afresh
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if lost or self._reconnected:
                if lost:
                    log.info("pub/sub connection restored")
                lost, delay, self._reconnected = False, 0.05, False
                self._broadcast(None)
            if msg is not None:
                self._dispatch(msg)

    async def _read(self, pubsub: PubSub) -> dict[str, object] | None:
        """One bounded read. A socket that died without a word (a partition, a proxy holding a
        half-open connection) would block a read for ever: after a silence the listener sends a
        PING, and reconnects when even that gets no answer."""
        msg: dict[str, object] | None = await pubsub.get_message(timeout=_TICK)
        silent = self._clock() - self._heard
        if msg is not None:
            self._heard, self._pinged = self._clock(), False
        elif silent > _SILENCE + _PONG_WAIT and pubsub.connection is not None:
            await pubsub.connection.disconnect()  # the next read reconnects and resubscribes
            raise RedisTimeoutError(f"no reply to PING within {_PONG_WAIT:g}s")
        elif silent > _SILENCE and not self._pinged:
            await self._send("PING")
            self._pinged = True
        if self._moved:
            await self._follow_master(pubsub)
        return msg

    async def _follow_master(self, pubsub: PubSub) -> None:
        """The server dropped a shard channel we listen to: its slot is elsewhere now. Look for
        the queue's master again and reconnect; the connection callback subscribes there."""
        self._moved = False
        log.info("pub/sub: the server dropped the queue's shard channels (its slot moved); reconnecting")
        master = self._redis.connection_pool.connection_kwargs.get("master")
        if master is not None:
            master.suspect()
        if pubsub.connection is not None:
            await pubsub.connection.disconnect()

    def _dispatch(self, msg: dict[str, object]) -> None:
        kind = msg.get("type")
        if kind == "pong":
            data = msg.get("data")
            fut = self._pongs.pop(data, None) if isinstance(data, bytes) else None
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        channel = msg.get("channel")
        if not isinstance(channel, bytes):
            return
        if kind in ("subscribe", "ssubscribe"):
            fut = self._confirmed.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "sunsubscribe":
            self._unsubscribed(channel)
        elif kind in ("message", "smessage"):
            data = msg.get("data")
            for cb in list(self._subs.get(channel, ())):
                cb(data if isinstance(data, bytes) else b"")

    def _unsubscribed(self, channel: bytes) -> None:
        """A shard channel's SUNSUBSCRIBE: the answer to ours, or the server dropping a channel
        still wanted (see _follow_master)."""
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
        elif channel in self._subs:
            self._moved = True

    def _broadcast(self, data: bytes | None) -> None:
        for callbacks in list(self._subs.values()):
            for cb in list(callbacks):
                cb(data)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            self._pubsub = None
        for fut in self._confirmed.values():
            fut.cancel()
        self._confirmed.clear()
        self._subs.clear()
        self._leaving.clear()


async def sharded_pubsub(redis: Redis) -> bool:
    """Whether the server has shard channels (Redis 7 and later, Valkey 7.2 and later), asked
    with a command the listener's ACL allows anyway. The scripts decide by the server's version
    (``SHARDED`` in _lib.lua), which gives the same answer."""
    try:
        await redis.execute_command("PUBSUB", "SHARDNUMSUB")  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        if "unknown" in str(exc).lower():  # Redis 6: "Unknown subcommand or wrong number of arguments"
            return False
        raise
    return True
