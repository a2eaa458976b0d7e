"""The Redis client a Queue builds from its URL: a connection pool that waits for a free
connection instead of failing.

redis-py 8's default pool raises ``MaxConnectionsError`` as soon as 100 connections are in use
(redis-py 5 allowed 2**31), so a burst of concurrent calls on one queue failed. This pool lets a
call wait, in FIFO order, for a connection to come back, up to a bounded time. No call of ours
holds a connection while it waits for another one (a pipeline, a script and its NOSCRIPT reload
take one at a time), so a full pool only delays calls: it cannot deadlock. The calls that hold
a connection longest are a pool's blocking pop on its inbox (a few seconds at most) and the
pub/sub connection of a queue that waits for results or serves a pool (for good).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from .errors import AiotaskqError

T = TypeVar("T")

# A URL query overrides each of these (?max_connections=...&timeout=...&socket_timeout=...).
MAX_CONNECTIONS: Final = 100  # redis-py 8's own cap: up to it nothing waits
CONNECTION_WAIT: Final = 10.0  # seconds a call waits for a free connection
# No call of ours blocks in Redis, so a reply slower than this means a dead connection
# (a partition, a half-open socket): without it, redis-py < 8 waits for ever (8 made 5 s
# its default).
SOCKET_TIMEOUT: Final = 5.0
# A stale pooled connection (Redis restarted) fails once; retry it quickly.
_RETRY_BACKOFF: Final = ExponentialWithJitterBackoff(base=0.05, cap=1.0)


class NoConnectionAvailable(AiotaskqError, RedisConnectionError):
    """Every connection of the queue's client stayed in use for the whole wait
    (``?timeout=`` in the URL, 10 s by default). A ``redis.exceptions.ConnectionError`` too."""


class WaitingPool(BlockingConnectionPool):
    """A ``BlockingConnectionPool`` (calls wait in turn for a connection, up to ``timeout``)
    whose "no connection available" says what to do about it, and which costs a call that
    finds a connection free, with nobody waiting, no more than the plain pool does: redis-py's
    puts every call through a condition and a timeout (~15 us a command on redis-py 8)."""

    _waiting = 0  # calls on the waiting path

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        # (redis-py 8 serialises the pool's changes while a server maintenance moves connections.)
        if not self._waiting and self.can_get_connection() and not getattr(self, "_in_maintenance", False):
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]  # no await since the check
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._waiting += 1
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if not isinstance(exc.__cause__, TimeoutError):  # not the wait: a connect that failed
                raise
            raise NoConnectionAvailable(
                f"no Redis connection came free within {self.timeout:g}s: all {self.max_connections} "
                "connections of the queue's client were in use. Raise ?max_connections= (or the wait, "
                "?timeout=) in the queue's URL, or make fewer Redis calls at once"
            ) from exc
        finally:
            self._waiting -= 1

    async def release(self, connection: Any) -> None:
        if self._waiting:
            await super().release(connection)  # and wakes the first call in line
        else:
            await ConnectionPool.release(self, connection)


class _Refused(Exception):
    """Carries an AuthenticationError past Retry (see LoginNotRetried)."""


class LoginNotRetried(Retry):
    """redis-py's Retry, except that a refused login fails at once: it is a ConnectionError
    to redis-py, and redis-py 5, with health checks on, answers a NOAUTH during the
    connection's set-up with a PING that it retries from inside the set-up again, without end."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Any, *args: Any, **kwargs: Any) -> T:
        async def once() -> T:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _Refused(exc) from None

        try:
            return await super().call_with_retry(once, fail, *args, **kwargs)
        except _Refused as refused:
            raise refused.args[0] from None


def client_from_url(url: str) -> Redis:
    """A client for a Queue's own use: the URL's query options win over our defaults."""
    # redis-py re-sends a command after a connection error. Every script tolerates that:
    # enqueue is idempotent by id, outcomes are fenced, and a claim whose reply was lost
    # is found and given back by the pool.
    pool = WaitingPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT, decode_responses=False,
        health_check_interval=30, retry=LoginNotRetried(_RETRY_BACKOFF, 3), socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )  # fmt: skip
    return Redis.from_pool(pool)
