"""A queue on a Redis Cluster or behind Sentinel, as docs/scaling.md shows it:
``python docs/examples/scaling.py redis+cluster://127.0.0.1:7000,127.0.0.1:7001``.

The URL is the only change: the same tasks, pools and CLI (``aiotaskq worker
docs.examples.scaling:queue --url redis+cluster://...``). ``main`` runs a pool in-process;
``tests/test_docs_examples.py`` runs it on a local cluster and a local Sentinel set-up.
"""

from __future__ import annotations

import os
import sys

import anyio

from aiotaskq import Pool, Queue

URL = os.environ.get("AIOTASKQ_REDIS_URL", "redis+cluster://127.0.0.1:7000")

# wait_replicas=1: an enqueue returns once a replica has the job too (raises NotReplicated if
# none confirms it within wait_timeout), so a failover right after cannot lose it.
queue = Queue("orders", url=URL, wait_replicas=1, wait_timeout=1.0)

# shards=3: one logical queue over three hash slots, so over three masters of a cluster.
emails = Queue("emails", url=URL, shards=3)


@queue.task
async def ship(order_id: int) -> str:
    return f"order {order_id} shipped"


@emails.task
async def send(to: str) -> str:
    return f"mail to {to}"


async def main(url: str) -> str:
    queue.use_url(url)
    emails.use_url(url)
    async with queue, emails:
        job = await ship.enqueue(42)
        mails = await send.enqueue_many([(f"user{i}@example.com",) for i in range(30)])  # spread over the shards
        pool = Pool([queue, emails], concurrency=4)  # serves every shard of emails
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            result = await job.result(timeout=10)
            sent = [await m.result(timeout=10) for m in mails if m is not None]
            pool.stop()
        assert sent == [f"mail to user{i}@example.com" for i in range(30)]
        return result


if __name__ == "__main__":
    print(anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else queue.url))
