"""aiotaskq.testing.LocalCluster: a real Redis Cluster on loopback ports, for the scale-out tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster

from aiotaskq.testing import LocalCluster


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> LocalCluster:
    return local_cluster


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: the failover test kills one of its masters."""
    with LocalCluster(masters=3, replicas=1, node_timeout_ms=1000) as c:
        yield c


async def test_the_cluster_serves_every_slot_through_a_cluster_client(cluster: LocalCluster) -> None:
    assert cluster.healthy()
    assert cluster.url.startswith("redis+cluster://127.0.0.1:") and cluster.url.count(",") == 5
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports])
    try:
        keys = [f"k{i}" for i in range(60)]
        masters = {cluster.master_port_for_slot(cluster.slot(k)) for k in keys}
        assert len(masters) == 3  # the keys spread over the three masters
        for k in keys:
            await client.set(k, k)
        assert [await client.get(k) for k in keys] == [k.encode() for k in keys]
    finally:
        await client.aclose()


def test_a_killed_master_is_failed_over_to_its_replica(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    slot = cluster.slot("aiotaskq:{failover}:jobs")
    old = cluster.master_port_for_slot(slot)
    cluster.node(old).kill()
    deadline = time.monotonic() + cluster.node_timeout_ms / 1000 + 10
    while time.monotonic() < deadline and not (cluster.master_port_for_slot(slot) != old and cluster.healthy()):
        time.sleep(0.05)
    new = cluster.master_port_for_slot(slot)
    assert new != old and cluster.healthy()
    assert cluster.node(new).process is not None
