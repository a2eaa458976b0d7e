"""Jobs that are useless late, as docs/expiry.md shows it: a reminder must start within
a second of its due time or not at all. tests/test_expires.py runs ``main`` against a real
Redis: while no pool runs, the reminders wait past their expiry; the pool that comes later
ends them cancelled, with the reason, instead of sending them late."""

from __future__ import annotations

import anyio

from aiotaskq import JobCancelled, Pool, Queue

queue = Queue("reminders")


@queue.task
async def send_reminder(user: int) -> str:
    return f"reminded {user}"


async def main(url: str) -> list[str]:
    queue.use_url(url)
    async with queue:
        late = [await send_reminder.options(expires=1).enqueue(u) for u in range(3)]
        await anyio.sleep(1.2)  # no pool yet: the reminders' latest start passes
        fresh = await send_reminder.options(expires=60).enqueue(99)
        pool = Pool(queue, concurrency=4)
        out: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            for job in late:
                assert job is not None
                try:
                    out.append(await job.result(timeout=10))
                except JobCancelled:
                    info = await job.info()
                    out.append(f"cancelled: {info.error.split(':')[0] if info and info.error else '?'}")
            assert fresh is not None
            out.append(await fresh.result(timeout=10))
            pool.stop()
    return out
