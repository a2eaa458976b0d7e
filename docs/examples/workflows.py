"""Dependencies and groups, as docs/dependencies.md and docs/groups.md show them: an order is
charged only after its stock is reserved and its address checked, and a report sums the sizes
of files fetched in parallel. tests/test_groups.py runs ``main`` against a real Redis."""

from __future__ import annotations

import anyio

from aiotaskq import Pool, Queue

queue = Queue("shop")


@queue.task
async def reserve_stock(order: int) -> str:
    return f"stock for {order} reserved"


@queue.task
async def check_address(order: int) -> str:
    return f"address of {order} checked"


@queue.task
async def charge(order: int) -> str:
    return f"order {order} charged"


@queue.task
async def fetch_size(url: str) -> int:
    await anyio.sleep(0.01)
    return len(url) * 100  # stands in for a download


@queue.task
async def report(sizes: list[int], title: str) -> str:  # the group's results come first
    return f"{title}: {sum(sizes)} bytes in {len(sizes)} files"


async def main(url: str) -> tuple[str, str]:
    queue.use_url(url)
    async with queue:
        stock = await reserve_stock.enqueue(7)
        address = await check_address.enqueue(7)
        charged = await charge.options(after=[stock, address]).enqueue(7)  # runs once both succeeded

        files = ["https://example.com/a", "https://example.com/bb", "https://example.com/ccc"]
        sizes = await queue.group([fetch_size.call(u) for u in files], then=report.call("nightly"))

        pool = Pool(queue, concurrency=4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            assert charged is not None  # (None only for a job_id already pending: deduplication)
            done = await charged.result(timeout=10), await sizes.result(timeout=10)
            pool.stop()
    return done
