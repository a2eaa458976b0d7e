"""A queue's own Redis client waits for a free connection: any number of concurrent calls
succeed, and a pool that stays exhausted fails with a clear error, on every redis-py the
package accepts (`make test-oldest` runs this suite on the oldest)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import anyio
import pytest
from _util import FAST, run_pool, wait_for
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aiotaskq import AiotaskqError, Job, JobStatus, NoConnectionAvailable, Queue
from aiotaskq._connection import CONNECTION_WAIT, MAX_CONNECTIONS, WaitingPool
from aiotaskq.testing import RedisServer, free_port


def _queue(url: str, name: str, query: str = "") -> Queue:
    return Queue(f"conn-{name}-{time.monotonic_ns()}", url=url + query)


async def test_the_own_client_waits_for_connections_with_the_defaults(redis_url: str) -> None:
    async with _queue(redis_url, "defaults") as q:
        pool = q.redis.connection_pool
        assert isinstance(pool, WaitingPool)
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, CONNECTION_WAIT)


async def test_url_options_set_the_pool_size_and_the_wait(redis_url: str) -> None:
    async with _queue(redis_url, "url", "?max_connections=3&timeout=0.5&socket_timeout=2") as q:
        pool = q.redis.connection_pool
        assert isinstance(pool, WaitingPool)
        assert (pool.max_connections, pool.timeout) == (3, 0.5)
        assert pool.connection_kwargs["socket_timeout"] == 2.0


async def test_a_shared_client_keeps_its_own_pool(redis_server: RedisServer) -> None:
    async with Redis.from_url(redis_server.url) as client:
        q = Queue(f"conn-shared-{time.monotonic_ns()}", redis=client)
        assert q.redis is client and q.redis.connection_pool is client.connection_pool
        await q.close()
        assert await client.ping()  # the queue did not close a client it does not own


async def test_600_concurrent_enqueues_on_one_queue_are_all_stored(redis_url: str) -> None:
    async with _queue(redis_url, "burst") as q:

        @q.task(name="burst.work")
        async def work(n: int) -> int:
            return n

        jobs = await asyncio.gather(*(work.enqueue(i) for i in range(600)))
        named = await asyncio.gather(*(q.enqueue("burst.work", args=(i,)) for i in range(600, 1200)))
        assert len({j.id for j in jobs} | {j.id for j in named if j is not None}) == 1200
        assert (await q.counts())[JobStatus.QUEUED] == 1200
        infos = await asyncio.gather(*(j.info() for j in jobs[:50]))
        assert [i.args for i in infos] == [(n,) for n in range(50)]


async def test_more_concurrent_calls_than_connections_wait_their_turn(redis_url: str) -> None:
    """Five connections, 400 concurrent reads: they queue for a connection instead of
    failing (redis-py 8's default pool raised MaxConnectionsError past 100)."""
    async with _queue(redis_url, "wait", "?max_connections=5") as q:
        job = await q.enqueue("any.task")
        assert job is not None
        statuses = await asyncio.gather(*(job.status() for _ in range(400)))
        assert set(statuses) == {JobStatus.QUEUED}
        pool = q.redis.connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 5


async def test_an_exhausted_pool_fails_with_a_clear_error_after_the_wait(redis_url: str) -> None:
    async with _queue(redis_url, "exhausted", "?max_connections=2&timeout=0.2") as q:
        pool = q.redis.connection_pool
        # Every connection in use, held here.
        held = [await pool.get_connection(), await pool.get_connection()]  # type: ignore[no-untyped-call]
        with anyio.fail_after(5), pytest.raises(NoConnectionAvailable) as caught:
            await q.enqueue("any.task")
        text = str(caught.value)
        assert "within 0.2s" in text and "all 2 connections" in text and "?max_connections=" in text
        assert isinstance(caught.value, RedisConnectionError) and isinstance(caught.value, AiotaskqError)
        with pytest.raises(NoConnectionAvailable):
            await q.job("x").status()
        await pool.release(held.pop())
        assert isinstance(await q.enqueue("any.task"), Job)  # one came back: the next call gets it
        await pool.release(held.pop())
        assert (await q.counts())[JobStatus.QUEUED] == 1


async def test_a_refused_connection_is_not_taken_for_an_exhausted_pool(redis_url: str) -> None:
    async with Queue("conn-refused", url=f"redis://127.0.0.1:{free_port()}/0?timeout=0.2") as q:
        with anyio.fail_after(10), pytest.raises(RedisConnectionError) as caught:
            await q.enqueue("any.task")
        assert not isinstance(caught.value, NoConnectionAvailable)


async def test_a_pool_on_a_small_connection_pool_serves_a_burst_without_deadlock(redis_url: str) -> None:
    """Four connections for everything: the pool's pub/sub connection (held for good), its
    blocking pop on the inbox, its claims, heartbeats and outcomes, 300 concurrent enqueues
    and 300 result waiters. Every call waits its turn; none holds one connection while it
    waits for another, so all of them finish."""
    async with _queue(redis_url, "small", "?max_connections=4") as q:

        @q.task(name="small.double")
        async def double(n: int) -> int:
            return 2 * n

        options: dict[str, Any] = {**FAST, "concurrency": 20}
        async with run_pool(q, **options):
            with anyio.fail_after(60):
                jobs = await asyncio.gather(*(double.enqueue(i) for i in range(300)))
                results = await asyncio.gather(*(j.result(timeout=50) for j in jobs))
        assert results == [2 * i for i in range(300)]


async def test_concurrent_first_subscribers_share_one_pubsub_connection(redis_url: str) -> None:
    """Each subscriber that came before the pub/sub connection existed used to take (and
    keep) a connection of its own: with a bounded pool that starved every other call."""
    async with _queue(redis_url, "subscribers", "?max_connections=50&timeout=2") as q:
        listener = q._listener_for_waiters()
        await asyncio.gather(*(listener.subscribe(f"{q.keys.prefix}ch{i}", lambda _: None) for i in range(100)))
        pool = q.redis.connection_pool
        assert len(pool._in_use_connections) == 1
        # Result waiters too (each subscribes, then reads its job's status).
        jobs = [j for j in await asyncio.gather(*(q.enqueue("never.runs") for _ in range(100))) if j is not None]
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(_wait_quietly, job)
            await wait_for(lambda: len(listener._subs) == 200, 10, "200 subscriptions")
            await wait_for(lambda: len(pool._in_use_connections) == 1, 5, "the status reads' connections back")
            tg.cancel_scope.cancel()


async def _wait_quietly(job: Job) -> None:
    with contextlib.suppress(TimeoutError):
        await job.result(timeout=30)


async def test_a_call_that_finds_the_pool_free_does_not_jump_the_line(redis_url: str) -> None:
    """A connection given back while calls wait goes to the first of them, not to a call that
    arrives just then (which takes the fast path only when nobody waits)."""
    async with _queue(redis_url, "line", "?max_connections=1&timeout=5") as q:
        pool = q.redis.connection_pool
        order: list[str] = []

        async def waiter() -> None:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            order.append("waiter")
            await pool.release(conn)

        held = await pool.get_connection()  # type: ignore[no-untyped-call]
        task = asyncio.create_task(waiter())
        await wait_for(lambda: len(getattr(pool, "_line", ())) == 1, 5, "the waiter in line")
        await pool.release(held)
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # arrives as the waiter is woken
        order.append("newcomer")
        await pool.release(conn)
        await task
        assert order == ["waiter", "newcomer"]


async def test_a_call_that_gives_up_after_its_turn_came_passes_it_on(redis_url: str) -> None:
    async with _queue(redis_url, "gives-up", "?max_connections=1&timeout=30") as q:
        pool = q.redis.connection_pool
        held = await pool.get_connection()  # type: ignore[no-untyped-call]
        first = asyncio.create_task(pool.get_connection())  # type: ignore[no-untyped-call]
        second = asyncio.create_task(pool.get_connection())  # type: ignore[no-untyped-call]
        await wait_for(lambda: len(getattr(pool, "_line", ())) == 2, 5, "two calls in line")
        await pool.release(held)  # kept for the first call...
        first.cancel()  # ...which gives up before it runs
        with anyio.fail_after(5):  # not the pool's 30 s wait
            conn = await second
        assert first.cancelled()
        await pool.release(conn)


def test_on_uvloop_a_connection_the_server_reset_is_retried_not_a_runtime_error(redis_server: RedisServer) -> None:
    """uvloop raises RuntimeError ('... the handler is closed') for a write on a connection the
    peer reset, where asyncio's loop gives a ConnectionError; redis-py let it through, and a
    worker on uvloop stopped on it. The queue's client takes it for the connection error it is
    and retries on a fresh connection."""
    uvloop = pytest.importorskip("uvloop")
    from benchmarks.faults.proxy import Proxy

    async def main() -> None:
        proxy = Proxy(redis_server.port)
        await proxy.start()
        q = Queue(f"conn-uvloop-{time.monotonic_ns()}", url=proxy.url)
        try:
            assert await q.redis.ping()
            sub = q.redis.pubsub()
            await sub.subscribe("conn-uvloop")
            await proxy.cut("reset")
            await proxy.restore()

            def transports_closed() -> bool:  # uvloop has seen the reset: the next write is the case under test
                conns = [*q.redis.connection_pool._available_connections, sub.connection]
                return all(c is None or c._writer is None or c._writer.transport.is_closing() for c in conns)

            await wait_for(transports_closed, 5, "uvloop to close the reset connections")
            # A RuntimeError before. redis-py 6 and later retry the command on a new connection;
            # redis-py 5 raises the ConnectionError and reconnects on the next call.
            with contextlib.suppress(RedisConnectionError):
                await q.redis.ping()
            assert await q.redis.ping()
            assert await q.enqueue("t", job_id="after-reset") is not None
            with contextlib.suppress(RedisConnectionError):
                await sub.subscribe("conn-uvloop-2")  # the pub/sub connection too
            await sub.subscribe("conn-uvloop-2")
            assert await q.redis.pubsub_numsub("conn-uvloop-2") == [(b"conn-uvloop-2", 1)]
            await sub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        finally:
            await q.close()
            await proxy.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
