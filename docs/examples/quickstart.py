"""The README's quick start as one runnable module: ``python docs/examples/quickstart.py [REDIS_URL]``.

In an application the worker is a process of its own (``python -m aiotaskq worker app.tasks:queue``);
``main`` runs the same ``Pool`` in-process so that the example is self-contained.
``tests/test_docs_examples.py`` runs ``main`` against the test suite's Redis.
"""

from __future__ import annotations

import os
import sys

import anyio

from aiotaskq import Pool, Queue

# -- app/tasks.py ------------------------------------------------------------------------------

queue = Queue("emails")  # Redis URL: $AIOTASKQ_REDIS_URL, else redis://localhost:6379/0


@queue.task(retries=3, timeout=30)
async def send_welcome(user_id: int, address: str) -> str:
    await anyio.sleep(0.01)  # call your mail provider; an exception here means "retry later"
    return f"welcome mail sent to {address}"


# -- app/main.py: what a FastAPI handler would do ----------------------------------------------


async def signup(user_id: int, email: str) -> dict[str, str]:
    job = await send_welcome.enqueue(user_id, email)  # stored in Redis before it returns
    return {"job_id": job.id}


# -- both ends in one process ------------------------------------------------------------------


async def main(url: str) -> str:
    """Enqueue through the handler, run a pool until the job is done, return its result."""
    queue.use_url(url)
    async with queue:  # closes the queue's connections at the end
        reply = await signup(42, "ada@example.com")
        pool = Pool(queue, concurrency=50)  # what `python -m aiotaskq worker` runs
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            result: str = await queue.job(reply["job_id"]).result(timeout=10)
            pool.stop()
    return result


if __name__ == "__main__":
    redis_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AIOTASKQ_REDIS_URL", "redis://localhost:6379/0")
    print(anyio.run(main, redis_url))
