from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from aiotaskq import Queue
from aiotaskq.testing import RedisServer, find_server, server_version

_names = itertools.count()
_NO_BRACES = str.maketrans("{}", "()")


def pytest_report_header() -> str:
    exe = find_server()
    return f"redis server: {server_version(exe)} ({exe}); $AIOTASKQ_REDIS_SERVER chooses another"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (tests that kill Redis start their own)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def queue(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Queue]:
    """A queue with a name of its own, so tests never see each other's jobs."""
    q = Queue(f"t{os.getpid()}-{next(_names)}-{request.node.name[:40].translate(_NO_BRACES)}", url=redis_url)
    yield q
    await q.close()
