"""One pub/sub connection per queue client, shared by every waiter.

Callbacks are called with the message data, or with None after the connection
was lost and came back (messages may have been missed: look again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
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

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Register ``callback``; returns once Redis confirmed the subscription."""
        ch = channel.encode()
        callbacks = self._subs.setdefault(ch, [])
        callbacks.append(callback)
        try:
            if len(callbacks) == 1:
                self._confirmed[ch] = asyncio.get_running_loop().create_future()
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                if self._pubsub.connection is None:  # connect once: each concurrent first
                    async with self._connecting:  # subscribe would take (and keep) a connection
                        if self._pubsub.connection is None:
                            await self._pubsub.connect()  # type: ignore[no-untyped-call]
                await self._pubsub.subscribe(ch)
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
            if self._pubsub is not None:
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
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
                await pubsub.ping(token)
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
        clock = asyncio.get_running_loop().time
        heard, pinged = clock(), False  # when the connection last delivered anything; PING sent since
        while True:
            try:
                # Bounded reads and a PING after a silence: a socket that died without a word (a
                # partition, a proxy holding a half-open connection) would block a read for ever.
                msg = await pubsub.get_message(timeout=_TICK)
                if msg is not None:
                    heard, pinged = clock(), False
                elif clock() - heard > _SILENCE + _PONG_WAIT and pubsub.connection is not None:
                    await pubsub.connection.disconnect()  # the next read reconnects and resubscribes
                    raise RedisTimeoutError(f"no reply to PING within {_PONG_WAIT:g}s")
                elif clock() - heard > _SILENCE and not pinged:
                    await pubsub.ping()
                    pinged = True
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                heard, pinged = clock(), False
                if not lost:
                    log.warning("pub/sub connection lost (%s); reconnecting", exc)
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if lost:
                lost, delay = False, 0.05
                log.info("pub/sub connection restored")
                self._broadcast(None)
            if msg is not None:
                self._dispatch(msg)

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
        if kind == "subscribe":
            fut = self._confirmed.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "message":
            data = msg.get("data")
            for cb in list(self._subs.get(channel, ())):
                cb(data if isinstance(data, bytes) else b"")

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
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        for fut in self._confirmed.values():
            fut.cancel()
        self._confirmed.clear()
        self._subs.clear()
