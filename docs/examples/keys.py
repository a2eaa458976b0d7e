"""One job at a time per account, as docs/key-concurrency.md shows it: ``key_concurrency=1`` and a
key per enqueue; other accounts run side by side. tests/test_key_concurrency.py runs ``main``
against a real Redis."""

from __future__ import annotations

import anyio

from aiotaskq import Pool, Queue

queue = Queue("ledger")
running: dict[str, int] = {}
most: dict[str, int] = {}


@queue.task(key_concurrency=1)
async def post_entries(account: str, batch: int) -> int:
    running[account] = running.get(account, 0) + 1
    most[account] = max(most.get(account, 0), running[account])
    await anyio.sleep(0.02)  # read the balance, write the entries: never twice at once per account
    running[account] -= 1
    return batch


async def main(url: str) -> dict[str, int]:
    queue.use_url(url)
    async with queue:
        jobs = [
            await post_entries.options(key=account).enqueue(account, batch)
            for batch in range(5)
            for account in ("acct-1", "acct-2", "acct-3")
        ]
        pool = Pool(queue, concurrency=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            for job in jobs:
                assert job is not None
                await job.result(timeout=10)
            pool.stop()
    return most  # {"acct-1": 1, "acct-2": 1, "acct-3": 1}
