"""Hooks, shared resources and progress, as docs/pools.md and docs/tasks.md show them:
``python docs/examples/hooks.py [REDIS_URL]``.

The queue's decorators declare what every pool serving it does at start and stop, and
around each job; ``python -m aiotaskq worker docs.examples.hooks:queue`` picks them up.
``main`` runs a pool in-process; ``tests/test_docs_examples.py`` runs it.
"""

from __future__ import annotations

import logging
import os
import sys

import anyio

from aiotaskq import JobContext, JobOutcome, Pool, Queue, current_job

log = logging.getLogger("app")

queue = Queue("imports")


class PriceList:
    """Stands for a resource worth opening once per worker: an HTTP client, a database pool."""

    def __init__(self) -> None:
        self.prices = {"apple": 30, "pear": 45}
        self.closed = False

    async def price(self, item: str) -> int:
        assert not self.closed, "used after shutdown"
        await anyio.sleep(0.001)  # a network call, in real life
        return self.prices.get(item, 0)

    async def close(self) -> None:
        self.closed = True


@queue.on_startup
async def open_resources(pool: Pool) -> None:
    pool.state.prices = PriceList()  # tasks reach it as current_job().state.prices


@queue.on_shutdown
async def close_resources(pool: Pool) -> None:
    await pool.state.prices.close()


@queue.before_job
def job_started(ctx: JobContext) -> None:
    log.info("starting %s (%s), attempt %d, enqueued %s", ctx.id, ctx.task, ctx.attempt, ctx.enqueued_at)


@queue.after_job
def job_ended(ctx: JobContext, outcome: JobOutcome) -> None:
    if outcome.status == "retrying":
        log.warning("%s will run again in %.1fs: %r", ctx.id, outcome.retry_in, outcome.error)
    else:
        log.info("%s ended %s", ctx.id, outcome.status)


@queue.task(name="imports.price_order", retries=2)
async def price_order(items: list[str]) -> int:
    job = current_job()
    total = 0
    for i, item in enumerate(items, 1):
        total += await job.state.prices.price(item)
        await job.progress(i / len(items), note=f"{i} of {len(items)} items")
    return total


async def main(url: str) -> tuple[int, float | None, str | None]:
    """Run one order through a pool; return its total and its last progress report."""
    queue.use_url(url)
    async with queue:
        job = await price_order.enqueue(["apple", "pear", "apple"])
        pool = Pool(queue, concurrency=4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            total: int = await job.result(timeout=10)
            pool.stop()
        assert pool.state.prices.closed  # on_shutdown ran
        info = await job.info()
    return total, info.progress, info.progress_note


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    redis_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AIOTASKQ_REDIS_URL", "redis://localhost:6379/0")
    print(anyio.run(main, redis_url))
