"""The Redis client a Queue builds from its URL: a connection pool that waits for a free
connection instead of failing, a Retry that knows which errors are lost connections, and, for
a cluster or Sentinel URL, connections that go where a Master says (_discovery.py).

redis-py 8's default pool raises ``MaxConnectionsError`` as soon as 100 connections are in use
(redis-py 5 allowed 2**31), so a burst of concurrent calls on one queue failed. This pool lets a
call wait, in FIFO order, for a connection to come back, up to a bounded time. No call of ours
holds a connection while it waits for another one (a pipeline, a script and its NOSCRIPT reload
take one at a time), so a full pool only delays calls: it cannot deadlock. The calls that hold
a connection longest are a pool's blocking pop on its inbox (a few seconds at most) and the
pub/sub connection of a queue that waits for results or serves a pool (for good).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _cluster, _sentinel
from ._discovery import Master, MasterConnection, MasterSSLConnection
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


class ClusterUrlNeeded(AiotaskqError, RedisError):
    """The queue's plain ``redis://`` URL names a node of a Redis Cluster that does not serve
    the queue's slot (it answered MOVED): the URL must be ``redis+cluster://host:port[,...]``.
    A pool stops on it at start-up (``Pool.run`` raises it); it is not retried."""


class NoConnectionAvailable(AiotaskqError, RedisConnectionError):
    """Every connection of the queue's client stayed in use for the whole wait
    (``?timeout=`` in the URL, 10 s by default). A ``redis.exceptions.ConnectionError`` too."""


class WaitingPool(ConnectionPool):
    """A ``ConnectionPool`` whose calls, when ``max_connections`` are in use, wait in arrival
    order for one to come back, up to ``timeout`` seconds (None: for ever), then raise
    NoConnectionAvailable. A call that finds one free while nobody waits takes it as the plain
    pool would. (redis-py's ``BlockingConnectionPool`` puts every call through a condition and
    a timeout, ~15 us a command on redis-py 8, and lets a newcomer take a connection given
    back for a call that waited.)"""

    def __init__(self, *, timeout: float | None = CONNECTION_WAIT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        # The waiting calls in arrival order; a call's future is done once a connection is
        # kept for it, and it leaves the line when it took it (or gave up).
        self._line: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._line or not self.can_get_connection():
            await self._wait_in_line()
        # No await since the check (or since the turn came): nobody else took this one.
        connection = self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _wait_in_line(self) -> None:
        """Return when a connection is kept for this call: the caller takes it before any await."""
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        self._pass_turns()  # in line behind others, but there may be room for all
        try:
            async with asyncio.timeout(self.timeout):
                await turn
        except BaseException as exc:
            self._line.remove(turn)
            self._pass_turns()  # a connection kept for this call goes to the next in line
            if isinstance(exc, TimeoutError):
                raise NoConnectionAvailable(
                    f"no Redis connection came free within {self.timeout:g}s: all {self.max_connections} "
                    "connections of the queue's client were in use. Raise ?max_connections= (or the wait, "
                    "?timeout=) in the queue's URL, or make fewer Redis calls at once"
                ) from exc
            raise
        self._line.remove(turn)

    def _pass_turns(self) -> None:
        """Keep a connection for as many waiting calls as there are free, first come first."""
        free = self.max_connections - len(self._in_use_connections)
        for turn in self._line:
            if free <= 0:
                return
            if not turn.done():
                turn.set_result(None)
            free -= 1

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if self._line:
            self._pass_turns()


class _Refused(Exception):
    """Carries an error that must not be retried past Retry (see QueueRetry)."""


_TRANSLATED = (RuntimeError, ResponseError, RedisConnectionError, RedisTimeoutError, OSError)
_CLUSTER_CODES: Final = {"MOVED": MovedError, "CLUSTERDOWN": ClusterDownError, "TRYAGAIN": TryAgainError}


def cluster_error(exc: BaseException) -> BaseException:
    """A cluster reply as its own error class: redis-py before 6 parses MOVED, CLUSTERDOWN and
    TRYAGAIN so only for its cluster client, and a plain connection gets a ResponseError."""
    if type(exc) is ResponseError:
        code, _, rest = str(exc).partition(" ")
        cls = _CLUSTER_CODES.get(code)
        if cls is MovedError:
            return MovedError(rest)
        if cls is not None:
            return cls(str(exc))
    return exc


def _translate(exc: BaseException, master: Master | None) -> BaseException:
    """What QueueRetry raises for ``exc`` (``exc`` itself when nothing changes)."""
    original, exc = exc, cluster_error(exc)
    if isinstance(exc, ResponseError) and not isinstance(exc, MovedError | ClusterDownError | TryAgainError |
                                                         ReadOnlyError):  # fmt: skip
        return original
    if isinstance(exc, RuntimeError):
        if not _closed_transport(exc):
            return exc
        if master is not None:
            master.suspect()
        return RedisConnectionError(f"connection closed by the server ({exc})")
    if master is None:
        return _Refused(cluster_url_needed(exc)) if isinstance(exc, MovedError) else original
    if isinstance(exc, MovedError):
        if not master.follows(int(exc.slot_id)):
            return exc  # a key of another slot, through queue.redis: not the queue's, and not retried
        master.moved(exc.host, int(exc.port))
        return RedisConnectionError(f"slot {exc.slot_id} moved to {exc.host}:{exc.port}")
    master.suspect()
    if isinstance(exc, ClusterDownError | TryAgainError | ReadOnlyError):
        return RedisConnectionError(f"the master moved: {exc}")
    return original


def cluster_url_needed(exc: MovedError) -> ClusterUrlNeeded:
    return ClusterUrlNeeded(
        f"this Redis is a node of a Redis Cluster, and the queue's slot {exc.slot_id} is served by "
        f"{exc.host}:{exc.port}: give the queue a cluster URL, redis+cluster://host:port[,host:port...] "
        "(rediss+cluster:// for TLS)"
    )


def _closed_transport(exc: RuntimeError) -> bool:
    """uvloop's error for a write on a connection that the peer closed (asyncio's own loop
    drops such a write and reports the loss on the next read, a ConnectionError)."""
    return "the handler is closed" in str(exc)


class QueueRetry(Retry):
    """redis-py's Retry, with these differences:

    - a refused login fails at once: it is a ConnectionError to redis-py, and redis-py 5,
      with health checks on, answers a NOAUTH during the connection's set-up with a PING that
      it retries from inside the set-up again, without end;
    - on uvloop, a write to a connection the peer reset raises ``RuntimeError: ... the handler
      is closed`` (uvloop issue #506), which redis-py lets through: here it is the
      ConnectionError it is, so redis-py drops the connection and retries on a new one, and
      the pool's loops see a connection error (the pool stopped on it before);
    - with a ``master`` to follow (a cluster or Sentinel URL), MOVED points it at the new
      address, and CLUSTERDOWN, TRYAGAIN, READONLY (a demoted master) or a lost connection make
      it look again: the command is retried there (it did not run). Without one, MOVED is
      ClusterUrlNeeded, not retried."""

    def __init__(self, *args: Any, master: Master | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.master = master

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Any, *args: Any, **kwargs: Any) -> T:
        async def once() -> T:
            try:
                return await do()
            except AuthenticationError as exc:
                raise _Refused(exc) from None
            except _TRANSLATED as exc:
                other = _translate(exc, self.master)
                if other is exc:
                    raise
                raise other from exc

        try:
            return await super().call_with_retry(once, fail, *args, **kwargs)
        except _Refused as refused:
            raise refused.args[0] from None


def client_from_url(url: str, prefix: str = "") -> Redis:
    """A client for a Queue's own use: the URL's query options win over our defaults. A
    cluster URL gives a client whose connections go to the master of ``prefix``'s slot, a
    Sentinel URL one whose connections go to the master the sentinels name."""
    scheme = url.partition("://")[0]
    master: Master | None = None
    if scheme in _cluster.SCHEMES:
        url, seeds = _cluster.parse_cluster_url(url)
        master = _cluster.SlotOwner(seeds, _cluster.slot_of(prefix))
    elif scheme in _sentinel.SCHEMES:
        url, sentinels, service, auth = _sentinel.parse_sentinel_url(url)
        master = _sentinel.SentinelMaster(sentinels, service, auth)
    # redis-py re-sends a command after a connection error. Every script tolerates that:
    # enqueue is idempotent by id, outcomes are fenced, and a claim whose reply was lost
    # is found and given back by the pool.
    pool = WaitingPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT, decode_responses=False,
        health_check_interval=30, retry=QueueRetry(_RETRY_BACKOFF, 3, master=master), socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )  # fmt: skip
    if master is not None:
        _to_master(pool, master)
    return Redis.from_pool(pool)


def _to_master(pool: WaitingPool, master: Master) -> None:
    """Make ``pool``'s connections go where ``master`` says, and its questions (CLUSTER SLOTS)
    log in as they do."""
    kw = pool.connection_kwargs
    ssl = issubclass(pool.connection_class, SSLConnection)
    master.connect_kwargs = {k: v for k, v in kw.items() if k in _SLOTS_KWARGS or k.startswith("ssl_")}
    if ssl:
        master.connect_kwargs["ssl"] = True
    pool.connection_class = MasterSSLConnection if ssl else MasterConnection
    kw["master"] = master


def client_from_cluster(cluster: RedisCluster, prefix: str) -> Redis:
    """A client of the queue's own for a shared ``RedisCluster``: the same nodes and
    credentials, with connections to the master of ``prefix``'s slot (see client_from_url)."""
    kw = cluster.connection_kwargs
    if kw.get("decode_responses"):
        raise ValueError("redis: the client must be created with decode_responses=False")
    seeds = cluster_nodes(cluster)
    master = _cluster.SlotOwner(seeds, _cluster.slot_of(prefix))
    own = {k: v for k, v in kw.items() if k in _SLOTS_KWARGS or k.startswith("ssl_") or k == "connection_class"}
    host, port = seeds[0]
    pool = WaitingPool(
        host=host, port=port, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT, health_check_interval=30,
        retry=QueueRetry(_RETRY_BACKOFF, 3, master=master),
        **{"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT, **own},
    )  # fmt: skip
    _to_master(pool, master)
    return Redis.from_pool(pool)


def cluster_nodes(cluster: RedisCluster) -> list[tuple[str, int]]:
    """The nodes a RedisCluster client was given, then those it found (redis-py 5 keeps the
    given ones in its nodes manager only)."""
    given = getattr(cluster, "startup_nodes", None) or list(cluster.nodes_manager.startup_nodes.values())
    return list(dict.fromkeys((n.host, int(n.port)) for n in [*given, *cluster.get_nodes()]))


def client_url(client: Redis) -> str:
    """Where a shared client connects, as a URL without its password (for Queue.url and logs)."""
    pool = client.connection_pool
    kw = pool.connection_kwargs
    service = getattr(pool, "service_name", None)
    if service is not None:  # a Sentinel master_for() client
        sentinels = ",".join(f"{c.connection_pool.connection_kwargs.get('host')}:"
                             f"{c.connection_pool.connection_kwargs.get('port')}"
                             for c in getattr(pool, "sentinel_manager").sentinels)  # noqa: B009  # fmt: skip
        return f"redis+sentinel://{sentinels}/{service}/{kw.get('db', 0)}"
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


# What a Master's questions (CLUSTER SLOTS, SENTINEL ...) take from the queue's connections.
_SLOTS_KWARGS = frozenset({"username", "password", "socket_timeout", "socket_connect_timeout", "credential_provider"})
