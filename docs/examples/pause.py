"""Pausing a queue during a maintenance window, as docs/pause.md shows it: producers go on
enqueueing, the pools start nothing, and resume() lets them go at once.
tests/test_pause.py runs ``main`` against a real Redis."""

from __future__ import annotations

import anyio

from aiotaskq import JobStatus, Pool, Queue

queue = Queue("billing")


@queue.task
async def charge(invoice: int) -> str:
    return f"invoice {invoice} charged"


async def main(url: str) -> list[str]:
    queue.use_url(url)
    async with queue:
        await queue.pause()  # e.g. while the payment provider is down
        jobs = [await charge.enqueue(n) for n in range(3)]  # accepted, and they wait
        pool = Pool(queue, concurrency=2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            assert (await queue.counts())[JobStatus.QUEUED] == 3
            await queue.resume()  # the idle pool is woken at once
            done = [await j.result(timeout=10) for j in jobs]
            pool.stop()
        return done
