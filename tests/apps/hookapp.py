"""A queue with hooks declared by decorator, for the CLI tests: the worker
(``python -m aiotaskq worker tests.apps.hookapp:queue``) must pick them up.
The queue's name comes from ``$HOOKAPP_QUEUE``, its Redis from ``$AIOTASKQ_REDIS_URL``.
``$HOOKAPP_FAIL_STARTUP`` makes the startup hook raise."""

from __future__ import annotations

import os
import time

from aiotaskq import JobContext, JobOutcome, Pool, Queue, current_job

queue = Queue(os.environ.get("HOOKAPP_QUEUE", "hookapp"))


@queue.on_startup
async def connect(pool: Pool) -> None:
    if os.environ.get("HOOKAPP_FAIL_STARTUP"):
        raise RuntimeError("cannot reach the billing database")
    pool.state.db = Queue(queue.name, url=os.environ["AIOTASKQ_REDIS_URL"]).redis  # "a database pool"
    await pool.state.db.set(queue.keys.prefix + "started", "1")


@queue.on_shutdown
async def disconnect(pool: Pool) -> None:
    await pool.state.db.set(queue.keys.prefix + "stopped", "1")
    await pool.state.db.aclose()


@queue.before_job
async def count_starts(ctx: JobContext) -> None:
    await ctx.state.db.incr(queue.keys.prefix + "before")


@queue.after_job
async def record(ctx: JobContext, outcome: JobOutcome) -> None:
    await ctx.state.db.rpush(queue.keys.prefix + "after", f"{ctx.task}:{outcome.status}")


@queue.task(name="hook.uses_db")
async def uses_db(key: str) -> str:
    db = current_job().state.db
    await db.set(key, current_job().id)
    return f"stored under {key}"


@queue.task(name="hook.stubborn")
def stubborn(seconds: float) -> None:
    """A plain function that ignores cancellation (as they all must)."""
    time.sleep(seconds)
