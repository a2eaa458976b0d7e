"""Queues on a real local Redis Cluster (aiotaskq.testing.LocalCluster): a queue's client goes
to the master of its slot, whatever node the URL names, and follows it through a failover."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Awaitable, Iterator

import anyio
import pytest
from _util import must, run_pool, shard_subscribers, spublish, wait_for
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import MovedError, RedisError

from aiotaskq import ClusterUrlNeeded, JobCancelled, JobNotFound, JobStatus, NotReplicated, Pool, Queue
from aiotaskq._cluster import parse_cluster_url
from aiotaskq.testing import LocalCluster, RedisServer


@pytest.mark.parametrize(
    ("url", "plain", "seeds"),
    [
        ("redis+cluster://127.0.0.1:7000", "redis://127.0.0.1:7000", [("127.0.0.1", 7000)]),
        ("redis+cluster://u:pw@h1:1,h2:2/0?max_connections=3", "redis://u:pw@h1:1/0?max_connections=3",
         [("h1", 1), ("h2", 2)]),
        ("rediss+cluster://:pw@[::1]:7000,h:7001?ssl_cert_reqs=none", "rediss://:pw@[::1]:7000/?ssl_cert_reqs=none",
         [("::1", 7000), ("h", 7001)]),
    ],
)  # fmt: skip
def test_cluster_urls_name_every_seed_node(url: str, plain: str, seeds: list[tuple[str, int]]) -> None:
    assert parse_cluster_url(url) == (plain, seeds)


def queue_on(cluster: LocalCluster, master: int, stem: str) -> str:
    """A queue name whose slot the master at port ``master`` serves."""
    for i in range(10_000):
        name = f"{stem}-{i}-{time.monotonic_ns()}"
        if cluster.master_port_for_slot(cluster.slot(f"aiotaskq:{{{name}}}:jobs")) == master:
            return name
    raise AssertionError("no queue name found for that master")


def masters(cluster: LocalCluster) -> list[int]:
    return sorted({cluster.master_port_for_slot(s) for s in (0, 8000, 16383)})


async def test_queues_on_every_master_run_jobs_through_one_seed_node(local_cluster: LocalCluster) -> None:
    seed = local_cluster.nodes[0].port
    for master in masters(local_cluster):
        q = Queue(queue_on(local_cluster, master, "c"), url=f"redis+cluster://127.0.0.1:{seed}")

        @q.task
        async def double(x: int) -> int:
            return 2 * x

        try:
            async with run_pool(q, concurrency=20):
                one = await double.enqueue(21)  # a single enqueue, its result through pub/sub
                many = await double.enqueue_many([(i,) for i in range(200)])  # pipelined scripts
                assert await one.result(timeout=10) == 42
                assert [await j.result(timeout=10) for j in many if j] == [2 * i for i in range(200)]
            assert (await q.counts())[JobStatus.SUCCEEDED] == 201
            assert q.url == f"redis+cluster://127.0.0.1:{seed}"
        finally:
            await q.close()


async def test_a_shared_redis_cluster_client_serves_a_queue_through_its_slot_owner(local_cluster: LocalCluster) -> None:
    nodes = [ClusterNode("127.0.0.1", p) for p in local_cluster.ports[:2]]
    shared = RedisCluster(startup_nodes=nodes)
    try:
        q = Queue(queue_on(local_cluster, masters(local_cluster)[2], "shared"), redis=shared)
        assert q.url == f"redis+cluster://127.0.0.1:{local_cluster.ports[0]},127.0.0.1:{local_cluster.ports[1]}"

        @q.task
        async def echo(x: str) -> str:
            return x

        async with run_pool(q):
            assert await (await echo.enqueue("hi")).result(timeout=10) == "hi"
        await q.close()
        assert await shared.set("still-open", 1)  # the queue closed its own client, not the shared one
    finally:
        await shared.aclose()


async def test_a_shared_plain_client_shows_where_it_connects(redis_server: RedisServer) -> None:
    redis_url = redis_server.url
    shared = Redis.from_url(redis_url)
    try:
        q = Queue("shown", redis=shared)
        assert q.url == redis_url  # redis://127.0.0.1:<port>/0, not the default URL
        assert repr(q) == f"<Queue 'shown' at {redis_url} (a shared client)>"
    finally:
        await shared.aclose()


async def test_a_key_of_another_slot_through_queue_redis_is_moved_error_and_moves_nothing(
    local_cluster: LocalCluster,
) -> None:
    master = masters(local_cluster)[0]
    q = Queue(queue_on(local_cluster, master, "other"), url=local_cluster.url)
    try:
        assert await q.enqueue("t") is not None
        other = next(k for k in (f"k{i}" for i in range(1000))
                     if local_cluster.master_port_for_slot(local_cluster.slot(k)) != master)  # fmt: skip
        with pytest.raises(MovedError):
            await q.redis.set(other, 1)
        assert await q.enqueue("t") is not None  # the queue's client still talks to its own master
        assert (await q.counts())[JobStatus.QUEUED] == 2
    finally:
        await q.close()


async def test_a_plain_url_to_another_node_fails_with_the_cluster_url_form(local_cluster: LocalCluster) -> None:
    seed = local_cluster.nodes[0].port
    other = next(m for m in masters(local_cluster) if m != seed)
    async with Queue(queue_on(local_cluster, other, "plain"), url=f"redis://127.0.0.1:{seed}/0") as q:
        with pytest.raises(ClusterUrlNeeded, match=r"redis\+cluster://host:port"):
            await q.enqueue("t")


async def test_a_pool_on_a_plain_url_to_another_node_stops_at_once(local_cluster: LocalCluster) -> None:
    seed = local_cluster.nodes[0].port
    other = next(m for m in masters(local_cluster) if m != seed)
    async with Queue(queue_on(local_cluster, other, "plainpool"), url=f"redis://127.0.0.1:{seed}/0") as q:
        with anyio.fail_after(10), pytest.raises(ClusterUrlNeeded):
            await Pool(q).run()


async def test_the_cli_takes_a_cluster_url(local_cluster: LocalCluster) -> None:
    from test_cli import APP, cli_env, run_cli

    name = queue_on(local_cluster, masters(local_cluster)[1], "cli")
    url = f"redis+cluster://127.0.0.1:{local_cluster.nodes[0].port}"
    async with Queue(name, url=url) as q:
        assert await q.enqueue("fault.add", args=(1, 2)) is not None
    done = await run_cli("info", APP, "--url", url, "--json", env=cli_env(name))
    assert done.returncode == 0, done.stderr
    [info] = json.loads(done.stdout)
    assert info["counts"]["queued"] == 1 and info["url"] == url


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(masters=3, replicas=1, node_timeout_ms=1000) as c:
        yield c


async def test_a_pool_follows_its_slot_through_a_failover_and_loses_no_job(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    master = masters(cluster)[1]
    seeds = ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    q = Queue(queue_on(cluster, master, "fo"), url=f"redis+cluster://{seeds}")
    ran: list[int] = []

    @q.task
    async def work(i: int) -> int:
        ran.append(i)
        await anyio.sleep(0.002)
        return i

    try:
        async with run_pool(q, concurrency=20):
            jobs = [j for j in await work.enqueue_many([(i,) for i in range(1000)]) if j]
            await wait_for(lambda: len(ran) > 200, 20, "the drain to be under way")
            cluster.node(master).kill()
            await wait_for(lambda: len(set(ran)) == 1000, cluster.node_timeout_ms / 1000 + 30,
                           "every job to run after the failover")  # fmt: skip
            assert cluster.master_port_for_slot(cluster.slot(q.keys.jobs)) != master
            late = await work.enqueue(1000)  # enqueue and result() after the failover
            assert await late.result(timeout=20) == 1000

            async def all_succeeded() -> bool:
                # an end written just before the kill may not have reached the replica
                # (replication is asynchronous): that job runs again, and ends
                return all([await j.status() is JobStatus.SUCCEEDED for j in jobs])

            await wait_for(all_succeeded, 30, "every job to end succeeded")
        assert len(ran) - 1001 <= 100, len(ran)  # duplicates: at most the jobs in flight at the kill
    finally:
        await q.close()


async def test_durable_enqueue_and_cancel_through_a_cluster_failover(own_cluster: LocalCluster) -> None:
    """As tests/test_sentinel.py proves behind Sentinel, on a cluster: with the queue's replica
    paused and cut off, a plain enqueue is acknowledged and lost in the failover, a durable one
    (wait_replicas=1) raises NotReplicated, and what a durable enqueue acknowledged before
    survives; after the failover a running job on the new master is still cancelled."""
    cluster = own_cluster
    master = masters(cluster)[2]
    replica = cluster.nodes[cluster.masters + [n.port for n in cluster.nodes].index(master)]
    name = queue_on(cluster, master, "durable")
    durable = Queue(name, url=cluster.url, wait_replicas=1, wait_timeout=0.5)
    plain = Queue(name, url=cluster.url)

    @plain.task(name="sleep")
    async def sleep(seconds: float) -> None:
        await anyio.sleep(seconds)

    try:
        assert await durable.enqueue("sleep", args=(0,), job_id="confirmed") is not None
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            await plain.redis.client_kill_filter(_type="slave")  # what follows never leaves the master
            assert await plain.enqueue("sleep", args=(0,), job_id="acknowledged") is not None
            with pytest.raises(NotReplicated, match="0 of 1 replica"):
                await durable.enqueue("sleep", args=(0,), job_id="refused")
            assert await plain.redis.hexists(plain.keys.jobs, "refused")  # written, but not acknowledged
            cluster.node(master).kill()
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        await wait_for(lambda: cluster.master_port_for_slot(cluster.slot(plain.keys.jobs)) == replica.port,
                       cluster.node_timeout_ms / 1000 + 30, "the replica to take over")  # fmt: skip

        async def status(job_id: str) -> JobStatus | None:
            try:
                return await plain.job(job_id).status()
            except JobNotFound:
                return None
            except (RedisError, OSError):
                return None

        await wait_for(lambda: _is(status("confirmed"), JobStatus.QUEUED), 20, "the queue on its new master")
        assert await status("acknowledged") is None  # acknowledged, then lost with the old master
        assert await status("refused") is None  # lost too, but its caller was told
        async with run_pool(plain, concurrency=2):
            long = must(await sleep.enqueue(60))
            await wait_for(lambda: _is(long.status(), JobStatus.ACTIVE), 10, "the long job to start")
            assert await long.cancel()
            with pytest.raises(JobCancelled):
                await long.result(timeout=10)
    finally:
        await durable.close()
        await plain.close()


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_shard_channels_follow_the_queue_s_slot_through_a_manual_failover(own_cluster: LocalCluster) -> None:
    """A graceful failover (CLUSTER FAILOVER on the replica) keeps the old master's connections open
    but drops their shard channels of the slots it gave up: the listener must notice, find the new
    master and subscribe there by itself, or waiters hear nothing until their safety poll."""
    cluster = own_cluster
    master = masters(cluster)[0]
    replica = cluster.nodes[cluster.masters + [n.port for n in cluster.nodes].index(master)].port
    q = Queue(queue_on(cluster, master, "ch"), url=cluster.url)
    channel = q.keys.done("some-job")
    heard: list[bytes | None] = []
    old = Redis.from_url(cluster.node(master).url)
    new = Redis.from_url(cluster.node(replica).url)
    try:
        await q._listener_for_waiters().subscribe(channel, heard.append)
        assert await shard_subscribers(old, channel) == 1
        assert await new.execute_command("CLUSTER", "FAILOVER") == b"OK"  # type: ignore[no-untyped-call]
        await wait_for(lambda: cluster.master_port_for_slot(cluster.slot(channel)) == replica, 10, "the failover")

        async def subscribed_on_the_new_master() -> bool:
            return await shard_subscribers(new, channel) == 1

        await wait_for(subscribed_on_the_new_master, 10, "the listener to subscribe on the new master")
        await spublish(new, channel, b"ended")
        await wait_for(lambda: b"ended" in heard, 5, "the message published on the new master")
        assert None in heard  # the waiters were told to look again (messages may have been missed)
    finally:
        await q.close()
        await old.aclose()
        await new.aclose()
