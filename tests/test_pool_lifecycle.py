from __future__ import annotations

import logging

import anyio
import pytest

from aiotaskq import Pool, Queue
from aiotaskq.testing import free_port


async def test_stop_while_redis_is_unreachable_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    """A pool still retrying to reach Redis at startup stops promptly when asked."""
    caplog.set_level(logging.WARNING, "aiotaskq")
    q = Queue("unreachable", url=f"redis://127.0.0.1:{free_port()}/0")
    pool = Pool(q, concurrency=1, shutdown_timeout=0.5)
    started: list[bool] = []

    async def on_startup(_: Pool) -> None:
        started.append(True)

    pool.on_startup = on_startup
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                while not any("registering pool" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                pool.stop()
    finally:
        await q.close()
    assert started == []


async def test_hooks_run_once_around_serving(queue: Queue) -> None:
    events: list[str] = []
    started = anyio.Event()

    async def on_startup(p: Pool) -> None:
        events.append(f"start:{len(p.pool_ids)}")
        started.set()

    def on_shutdown(p: Pool) -> None:
        events.append("stop")

    pool = Pool(queue, on_startup=on_startup, on_shutdown=on_shutdown)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            await started.wait()
            pool.stop()
    assert events == ["start:1", "stop"]


async def test_a_slow_shutdown_hook_does_not_register_the_pool_again(queue: Queue) -> None:
    """Heartbeats stop before the pool leaves: a heartbeat after leaving would find the
    pool gone, take it for dead and register a phantom pool under a new id."""

    async def on_shutdown(_: Pool) -> None:
        await anyio.sleep(0.5)  # several heartbeat intervals

    pool = Pool(queue, heartbeat_interval=0.05, stale_timeout=1, on_shutdown=on_shutdown)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            while not await queue.redis.zcard(queue.keys.pools):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            pool.stop()
    assert await queue.redis.zcard(queue.keys.pools) == 0
