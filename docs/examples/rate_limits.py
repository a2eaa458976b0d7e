"""A rate-limited task beside an unlimited one, as docs/rate-limits.md shows it: the partner
API gets at most 5 calls a second across every pool, and the receipts do not wait behind them.
tests/test_rate_limit.py runs ``main`` against a real Redis."""

from __future__ import annotations

import time

import anyio

from aiotaskq import Pool, Queue

queue = Queue("partners")
calls: list[float] = []


@queue.task(rate_limit="5/s")
async def call_partner_api(order: int) -> int:
    calls.append(time.time())  # the windows are whole seconds of the clock (Redis's, here the same)
    return order


@queue.task
async def send_receipt(order: int) -> str:
    return f"receipt {order} sent"


async def main(url: str) -> tuple[list[float], list[str]]:
    """Ten limited calls and three receipts; returns when the limited calls started and the
    receipts, which came back first."""
    queue.use_url(url)
    async with queue:
        limited = await call_partner_api.enqueue_many([(n,) for n in range(10)])
        receipts = [await send_receipt.enqueue(n) for n in range(3)]
        pool = Pool(queue, concurrency=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            sent = [await r.result(timeout=10) for r in receipts]  # at once, behind no limit
            for job in limited:
                assert job is not None
                await job.result(timeout=10)
            pool.stop()
    return calls, sent
