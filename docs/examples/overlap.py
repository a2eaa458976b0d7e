"""Recurring tasks that must not overlap, and one that also runs at start-up, as docs/recurring.md
shows them: ``sync_accounts`` ticks every 0.1 s with ``overlap=False`` and its first run lasts
several ticks; those ticks are skipped (the pool logs a warning for each), not run beside it.
``warm_cache`` runs nightly and, with ``run_at_startup=True``, once as the pool starts.
tests/test_overlap.py runs ``main`` against a real Redis."""

from __future__ import annotations

from datetime import timedelta

import anyio

from aiotaskq import Pool, Queue, current_job

queue = Queue("accounts")
EVERY = timedelta(milliseconds=100)  # minutes in production: short here, so the example takes a second
syncs: list[str] = []  # the job ids of sync_accounts' runs, in start order
first_sync_may_end = anyio.Event()
synced_again = anyio.Event()  # a second run started


@queue.task(every=EVERY, overlap=False)
async def sync_accounts() -> None:
    syncs.append(current_job().id)
    if len(syncs) == 1:
        await first_sync_may_end.wait()  # a slow sync: it lasts until main has seen ticks go by
    else:
        synced_again.set()


@queue.task(cron="0 3 * * *", run_at_startup=True)
async def warm_cache() -> str:
    return "cache warmed"


async def ticks_skipped() -> int:
    """The ticks of sync_accounts that passed without a job since its last one: its schedule's
    next run moved on, its last run (the tick of its last job) stayed."""
    [info] = [s for s in await queue.schedules() if s.key == sync_accounts.name]
    if info.next_run is None or info.last_run is None:
        return 0
    return round((info.next_run - info.last_run) / EVERY) - 1


async def skipped_while_the_first_sync_runs(n: int) -> int:
    """Wait until the first sync runs and ``n`` ticks went by without a job; how many did."""
    while True:
        if syncs and (skipped := await ticks_skipped()) >= n:
            return skipped
        await anyio.sleep(0.01)  # the schedule lives in Redis: look again


async def main(url: str) -> tuple[str, int, int]:
    """Returns the start-up run's result, how many syncs started while the first one ran (1: only
    it) and how many ticks were skipped meanwhile (at least 3)."""
    global first_sync_may_end, synced_again
    first_sync_may_end, synced_again = anyio.Event(), anyio.Event()
    syncs.clear()
    queue.use_url(url)
    async with queue:
        pool = Pool(queue, concurrency=5)  # room for five syncs at once: overlap=False still runs one
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with anyio.fail_after(10):
                skipped = await skipped_while_the_first_sync_runs(3)
                started_meanwhile = len(syncs)  # five free slots, and still only the first sync
                first_sync_may_end.set()
                await synced_again.wait()  # the first tick after it ended runs
                # The pool enqueued this run as it started, before its first tick.
                warmed = await queue.job(f"schedule:{warm_cache.name}:startup").result()
            pool.stop()
    return warmed, started_meanwhile, skipped
