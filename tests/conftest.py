from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from aiotaskq import Queue
from aiotaskq.testing import LocalCluster, RedisServer, find_server, server_version

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest on a user's project
_names = itertools.count()
# `make test-cluster`: tests' queues live on the session's local Redis Cluster instead (each
# name's slot picks one of its three masters), reached through a redis+cluster:// URL.
ON_CLUSTER = os.environ.get("AIOTASKQ_TEST_ON") == "cluster"
_NO_BRACES = str.maketrans("{}", "()")


def pytest_report_header() -> str:
    exe = find_server()
    return f"redis server: {server_version(exe)} ({exe}); $AIOTASKQ_REDIS_SERVER chooses another"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (tests that kill Redis start their own)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """One private 3-master, 3-replica Redis Cluster for the session (tests that kill a node
    start their own)."""
    major = re.search(r"v=(\d+)", server_version(find_server()))
    if not major or int(major.group(1)) < 7:
        pytest.skip("LocalCluster needs Redis 7 or Valkey 7.2 (CLUSTER ADDSLOTSRANGE)")
    with LocalCluster(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture
def redis_url(redis_server: RedisServer, request: pytest.FixtureRequest) -> str:
    """Where tests' queues live: the session's redis-server, or its local cluster (`make
    test-cluster`; a test that needs a plain server takes `redis_server.url`)."""
    return str(request.getfixturevalue("local_cluster").url) if ON_CLUSTER else redis_server.url


@pytest.fixture
async def queue(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Queue]:
    """A queue with a name of its own, so tests never see each other's jobs."""
    q = Queue(f"t{os.getpid()}-{next(_names)}-{request.node.name[:40].translate(_NO_BRACES)}", url=redis_url)
    yield q
    await q.close()
