"""Queues behind Redis Sentinel (aiotaskq.testing.LocalSentinel: a master, a replica and three
sentinels on loopback ports): a queue follows the master the sentinels name, through a failover."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from _util import run_pool, wait_for
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from aiotaskq import Job, JobNotFound, JobStatus, NotReplicated, Queue
from aiotaskq._sentinel import parse_sentinel_url
from aiotaskq.testing import LocalSentinel, RedisServer


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://127.0.0.1:26379/mymaster",
         ("redis://127.0.0.1:26379/0", [("127.0.0.1", 26379)], "mymaster", {})),
        ("rediss+sentinel://:pw@h1:1,h2:2/svc/3?socket_timeout=2&sentinel_password=sp",
         ("rediss://:pw@h1:1/3?socket_timeout=2", [("h1", 1), ("h2", 2)], "svc", {"password": "sp"})),
    ],
)  # fmt: skip
def test_sentinel_urls_name_the_sentinels_the_service_and_the_db(url: str, parsed: tuple[object, ...]) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    with LocalSentinel(replicas=1, down_after_ms=1000) as s:
        yield s


async def test_a_queue_follows_the_master_through_a_failover(sentinel: LocalSentinel) -> None:
    q = Queue(f"sent-{time.monotonic_ns()}", url=sentinel.url)
    ran: list[int] = []

    @q.task
    async def work(i: int) -> int:
        ran.append(i)
        await anyio.sleep(0.002)
        return i

    @q.task
    async def hold() -> None:
        await anyio.sleep(60)

    try:
        async with run_pool(q, concurrency=20):
            jobs = [j for j in await work.enqueue_many([(i,) for i in range(1000)]) if j]
            await wait_for(lambda: len(ran) > 200, 20, "the drain to be under way")
            old = sentinel.master_port()
            sentinel.server(old).kill()
            await wait_for(lambda: len(set(ran)) == 1000, sentinel.down_after_ms / 1000 + 30,
                           "every job to run after the failover")  # fmt: skip
            assert sentinel.master_port() != old

            async def all_succeeded() -> bool:
                return all([await j.status() is JobStatus.SUCCEEDED for j in jobs])

            await wait_for(all_succeeded, 30, "every job to end succeeded")
            late = await work.enqueue(1000)  # enqueue and result() on the new master
            assert await late.result(timeout=20) == 1000
            held = await hold.enqueue()  # a cancel reaches the pool through the new master
            await wait_for(_is(held, JobStatus.ACTIVE), 20, "the held job to start")
            await held.cancel()
            await wait_for(_is(held, JobStatus.CANCELLED), 10, "the cancel to take")
        assert len(ran) - 1001 <= 100, len(ran)  # duplicates: at most the jobs in flight at the kill
    finally:
        await q.close()


def _is(job: Job[Any], status: JobStatus) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await job.status() is status

    return check


async def test_durable_enqueue_raises_instead_of_acknowledging_what_a_failover_loses(
    sentinel: LocalSentinel,
) -> None:
    """With the replica paused and cut off, a plain enqueue is acknowledged and lost in the
    failover; a durable one (wait_replicas=1) raises NotReplicated instead; what a durable
    enqueue acknowledged before survives."""
    name = f"durable-{time.monotonic_ns()}"
    durable = Queue(name, url=sentinel.url, wait_replicas=1, wait_timeout=0.5)
    plain = Queue(name, url=sentinel.url)
    try:
        assert await durable.enqueue("t", job_id="confirmed") is not None
        [replica] = sentinel.replicas
        assert replica.process is not None
        old = sentinel.master_port()
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            # the master's side of the replication link closed: what follows never leaves the master
            await plain.redis.client_kill_filter(_type="slave")  # "replica" is refused by redis-py 5
            assert await plain.enqueue("t", job_id="acknowledged") is not None
            started = time.monotonic()
            with pytest.raises(NotReplicated, match="0 of 1 replica"):
                await durable.enqueue("t", job_id="refused")
            assert 0.4 < time.monotonic() - started < 5
            assert await plain.redis.hexists(plain.keys.jobs, "refused")  # written, but not acknowledged
            sentinel.server(old).kill()
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        await wait_for(lambda: sentinel.master_port() != old, 30, "the failover")

        async def status(job_id: str) -> JobStatus | None:
            try:
                return await Job(plain, job_id).status()
            except JobNotFound:
                return None

        await wait_for(lambda: _answers(plain), 20, "the queue to reach the new master")
        assert await status("confirmed") is JobStatus.QUEUED
        assert await status("acknowledged") is None  # acknowledged, then lost with the old master
        assert await status("refused") is None  # lost too, but its caller was told
    finally:
        await durable.close()
        await plain.close()


async def _answers(q: Queue) -> bool:
    try:
        return bool(await q.redis.ping())
    except (RedisError, OSError):
        return False


async def test_outcomes_no_replica_confirmed_are_recorded_and_only_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A durable queue whose replica is gone: the enqueue raises (nothing acknowledged it, yet
    the job is on the master, even when the script had to be loaded first), and the pool that
    runs it records its outcome and says that no replica confirmed it, instead of retrying the
    write for ever or failing the job."""
    caplog.set_level(logging.WARNING, logger="aiotaskq")
    with RedisServer() as server:  # no replica: every WAIT confirms 0
        q = Queue("durable-outcomes", url=server.url, wait_replicas=1, wait_timeout=0.05)

        @q.task
        async def double(n: int) -> int:
            return 2 * n

        try:
            with pytest.raises(NotReplicated, match="0 of 1 replica"):
                await double.options(job_id="d1").enqueue(21)  # first call: NOSCRIPT, loaded, run again
            assert await q.job("d1").status() is JobStatus.QUEUED  # written, as NotReplicated says
            async with run_pool(q):
                assert await q.job("d1").result(timeout=10) == 42
            assert (await q.job("d1").info()).attempts == 1
        finally:
            await q.close()
    warned = [r.getMessage() for r in caplog.records if "confirmed the write" in r.getMessage()]
    assert warned and "0 of 1 replica(s)" in warned[0] and "job outcomes" in warned[0], warned


def test_wait_options_are_checked_when_the_queue_is_made() -> None:
    with pytest.raises(ValueError, match="wait_replicas: expected an int >= 0"):
        Queue("q", wait_replicas=-1)
    with pytest.raises(ValueError, match="wait_timeout: must be > 0 seconds"):
        Queue("q", wait_replicas=1, wait_timeout=0)


async def test_a_shared_master_for_client_serves_a_queue(sentinel: LocalSentinel) -> None:
    sentinels = Sentinel([("127.0.0.1", s.port) for s in sentinel.sentinels])  # type: ignore[no-untyped-call, unused-ignore]
    client = sentinels.master_for(sentinel.service)
    q = Queue(f"sentshared-{time.monotonic_ns()}", redis=client)
    try:
        assert q.url == sentinel.url

        @q.task
        async def echo(x: str) -> str:
            return x

        async with run_pool(q):
            assert await (await echo.enqueue("hi")).result(timeout=10) == "hi"
    finally:
        await q.close()
        await client.aclose()
