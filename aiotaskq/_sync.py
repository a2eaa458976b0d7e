"""Producers without an event loop: a Django or Flask view, a script, a Celery-era codebase.

``task.enqueue_sync(...)``, ``queue.enqueue_sync(name, ...)``, ``job.status_sync()``,
``job.info_sync()`` and ``job.result_sync(timeout)`` run on redis-py's blocking client and the
same Lua scripts as the async calls: what they write is what ``enqueue`` writes (the options
are checked and encoded by the same code), so a worker cannot tell them apart. One
``SyncClient`` per queue, made on first use; redis-py's blocking clients are thread-safe (each
command takes a connection of the pool for itself), and so is everything here: a call holds no
state between its commands but the client.

Connections follow the queue's URL: ``redis://``, ``rediss://``, ``unix://`` as they are;
``redis+sentinel://`` through a Sentinel ``master_for`` client (a failover is followed by
redis-py); ``redis+cluster://`` through a ``RedisCluster`` client, whose node for the queue's
slot runs the pipelines (a script and its ``WAIT``) and the result subscriptions. A queue made
with ``redis=`` (a shared async client) has no URL of its own to follow: the sync calls raise a
``TypeError`` that says to pass ``url=``.

``result_sync`` waits as ``result`` does: it subscribes to the job's end channel first, reads
the job, and then waits for the message (``SSUBSCRIBE`` from Redis 7 on, as the scripts publish
by the server's version), re-reading the job every second in case a message was missed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import redis as redis_sync
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as SyncCluster
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel

from . import _cluster, _sentinel
from ._lua import source

if TYPE_CHECKING:
    from ._scripts import Call


_OUTAGE_WAIT = 0.2  # seconds between tries while Redis is away, in result_sync


class SyncClient:
    """The blocking connections of one queue (all its shards), and the scripts' SHA1s."""

    def __init__(self, url: str) -> None:
        scheme = url.partition("://")[0]
        self._cluster: SyncCluster | None = None
        self._plain: redis_sync.Redis | None = None
        if scheme in _cluster.SCHEMES:
            plain, seeds = _cluster.parse_cluster_url(url)
            kwargs = _kwargs(plain, "host", "port", "db")
            nodes = [ClusterNode(h, p) for h, p in seeds]  # type: ignore[no-untyped-call]
            self._cluster = SyncCluster(startup_nodes=nodes, decode_responses=False, **kwargs)
        elif scheme in _sentinel.SCHEMES:
            plain, sentinels, service, auth = _sentinel.parse_sentinel_url(url)
            kwargs = _kwargs(plain, "host", "port")
            sentinel = Sentinel(sentinels, sentinel_kwargs=auth or None, socket_timeout=5.0)  # type: ignore[no-untyped-call,unused-ignore]
            self._plain = sentinel.master_for(service, decode_responses=False, socket_timeout=5.0, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
        else:
            self._plain = redis_sync.Redis.from_url(url, decode_responses=False, socket_timeout=5.0)
        self._shas: dict[str, str] = {}
        self._sharded: bool | None = None  # the server publishes with SPUBLISH (Redis >= 7)

    def node(self, key: str) -> redis_sync.Redis:
        """A plain client of the master that holds ``key`` (the client itself off a cluster)."""
        if self._cluster is None:
            assert self._plain is not None
            return self._plain
        conn = self._cluster.get_node_from_key(key).redis_connection  # type: ignore[no-untyped-call]
        assert conn is not None
        return conn  # type: ignore[no-any-return]

    def run(self, call: Call, wait: tuple[int, int] | None = None) -> tuple[Any, int | None]:
        """Run one script call (loading the script on NOSCRIPT); with ``wait`` (replicas, ms),
        a WAIT on the same connection. Returns the reply and the replicas that confirmed."""
        sha = self._shas.get(call.script)
        src = source(call.script)
        for _ in range(2):
            if sha is None:
                sha = self._shas[call.script] = self._load(call.keys[0], src)
            try:
                if wait is None and self._cluster is not None:
                    return self._cluster.evalsha(sha, len(call.keys), *call.keys, *call.args), None
                pipe = self.node(call.keys[0]).pipeline(transaction=False)
                pipe.evalsha(sha, len(call.keys), *call.keys, *call.args)
                if wait is not None:
                    pipe.execute_command("WAIT", *wait)  # type: ignore[no-untyped-call]
                out = pipe.execute(raise_on_error=True)
                return out[0], (int(out[1]) if wait is not None else None)
            except NoScriptError:
                sha = None
        raise RuntimeError(f"script {call.script!r} could not be loaded")  # pragma: no cover

    def _load(self, key: str, src: str) -> str:
        return str(self.node(key).script_load(src))

    def read(self, jobs: str, active: str, ended: str, job_id: str) -> tuple[Any, Any, Any]:
        """A job's record, active entry and ended record, in one MULTI."""
        pipe = self.node(jobs).pipeline(transaction=True)
        pipe.hget(jobs, job_id)
        pipe.hget(active, job_id)
        pipe.get(ended)
        pending, running, done = pipe.execute()
        return pending, running, done

    def wait_message(self, channel: str, check: Any, timeout: float | None) -> Any:
        """Subscribe to ``channel``, then call ``check(message or None)`` until it returns a
        tuple (the outcome) rather than a float (how long to wait for a message before the
        next call), within ``timeout``. A lost connection (Redis restarting, a failover) is
        waited out, within the timeout: subscribe again, read again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._wait_once(channel, check, deadline, timeout)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"the job did not end within {timeout}s (Redis: {exc})") from exc
                if self._cluster is not None:  # the slot may have moved: ask the cluster again
                    with contextlib.suppress(RedisError):
                        self._cluster.nodes_manager.initialize()
                time.sleep(_OUTAGE_WAIT)

    def _wait_once(self, channel: str, check: Any, deadline: float | None, timeout: float | None) -> Any:
        conn = self.node(channel)
        if self._sharded is None:
            version = str(conn.info("server").get("redis_version", "0"))
            self._sharded = int(version.split(".")[0]) >= 7
        pubsub = conn.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
        try:
            if self._sharded:
                pubsub.ssubscribe(channel)
            else:
                pubsub.subscribe(channel)
            message: bytes | None = None
            while True:
                out = check(message)
                if isinstance(out, tuple):
                    return out
                left = out if deadline is None else min(out, deadline - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"the job did not end within {timeout}s")
                got = pubsub.get_sharded_message(timeout=left) if self._sharded else pubsub.get_message(timeout=left)
                message = got["data"] if got and isinstance(got.get("data"), bytes) else None
        finally:
            pubsub.close()

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
        if self._plain is not None:
            self._plain.close()


def _kwargs(url: str, *drop: str) -> dict[str, Any]:
    """The connection options of a plain URL, less ``drop``; TLS as ``ssl=True``."""
    kwargs: dict[str, Any] = dict(parse_url(url))  # type: ignore[no-untyped-call]
    for name in drop:
        kwargs.pop(name, None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    return kwargs


_lock = threading.Lock()


def sync_client(queue: Any) -> SyncClient:
    """The queue's blocking client, made once (by whichever thread asks first)."""
    root = queue._root
    client: SyncClient | None = getattr(root, "_sync", None)
    if client is not None:
        return client
    with _lock:
        client = getattr(root, "_sync", None)
        if client is None:
            if not root._own_redis:
                raise TypeError(f"queue {root.name!r} was made with redis= (a shared async client): the sync "
                                "calls need a URL to open blocking connections; make it with url= instead")  # fmt: skip
            client = root._sync = SyncClient(root._url)
    return client
