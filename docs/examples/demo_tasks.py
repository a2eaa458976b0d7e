"""The tasks of ``make demo``: ``docs/examples/demo.py`` runs a worker on ``queue`` and feeds it.

The worker is started as ``python -m aiotaskq worker docs.examples.demo_tasks:queue``. Each demo run
uses a queue of its own: ``demo.py`` puts its name in ``AIOTASKQ_DEMO_QUEUE``, which the worker
subprocess inherits.
"""

from __future__ import annotations

import os
import time

import anyio

from aiotaskq import Queue

queue = Queue(os.environ.get("AIOTASKQ_DEMO_QUEUE", "demo"))


@queue.task(name="demo.ping")
async def ping() -> str:
    """Answers at once: the demo's way to see that the worker is up."""
    return "pong"


@queue.task(name="demo.send_email")
async def send_email(user_id: int) -> str:
    """An ordinary coroutine task."""
    await anyio.sleep(0.5)  # talking to a mail provider
    return f"mail sent to user {user_id}"


@queue.task(name="demo.resize_image")
def resize_image(name: str, width: int) -> str:
    """A plain function: the worker runs it in a thread, never on its event loop."""
    time.sleep(0.6)  # CPU-bound or blocking work
    return f"{name} resized to {width}px"


@queue.task(name="demo.charge_card", priority=10)
async def charge_card(order_id: int, cents: int) -> str:
    """Priority 10 by default: runs before the priority-0 backlog."""
    await anyio.sleep(0.2)
    return f"order {order_id}: charged {cents / 100:.2f} EUR"


@queue.task(name="demo.build_report")
async def build_report(period: str) -> dict[str, int | str]:
    """Enqueued with a delay (or at a given time) by the demo."""
    await anyio.sleep(0.1)
    return {"period": period, "rows": 1234}


# Which SKUs already failed once, in this worker process (the demo runs a single worker).
_failed_once: set[str] = set()


@queue.task(name="demo.sync_inventory", retries=3, backoff=(0.3, 1.0))
async def sync_inventory(sku: str) -> str:
    """Fails on its first attempt and succeeds on the retry, after a short backoff."""
    await anyio.sleep(0.1)
    if sku not in _failed_once:
        _failed_once.add(sku)
        raise ConnectionError("inventory service timed out")
    return f"{sku} in sync"


@queue.task(name="demo.import_contacts", retries=1, backoff=(0.2, 0.2))
async def import_contacts(url: str) -> int:
    """Always fails: after its one retry the job ends ``failed``, with the error kept."""
    await anyio.sleep(0.1)
    raise ValueError(f"{url.rsplit('/', 1)[-1]} line 3: 4 fields, expected 3")
