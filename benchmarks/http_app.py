"""The HTTP benchmark's server: a FastAPI app whose endpoint enqueues one job per request.

``uvicorn benchmarks.http_app:app`` in a process of its own (``benchmarks/web.py`` starts it,
one worker process); the environment says what it serves:

- ``BENCH_HTTP_SYSTEM``: a system of ``benchmarks.adapter.SYSTEMS``, whose plain one-job enqueue
  the endpoint awaits; or ``baseline``: the same endpoint without the enqueue line;
- ``BENCH_HTTP_URL``, ``BENCH_HTTP_QUEUE``: the Redis and the queue.

``POST /enqueue`` (``GET`` too) enqueues ``noop(i)``, ``i`` counting the requests, and returns
``{"id": <the job's id>}``; ``GET /served`` says how many requests the endpoint answered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .adapter import System, load_system

BASELINE = "baseline"
AWAITED = "awaited"  # the endpoint awaits one no-op future in place of the enqueue
SYSTEM = os.environ.get("BENCH_HTTP_SYSTEM", BASELINE)


class _State:
    system: System | None = None
    served = 0


STATE = _State()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    if SYSTEM not in (BASELINE, AWAITED):
        system = load_system(SYSTEM)
        await system.open(os.environ["BENCH_HTTP_URL"], os.environ["BENCH_HTTP_QUEUE"])
        await system.waiting()  # connected before the first request
        STATE.system = system
    try:
        yield
    finally:
        if STATE.system is not None:
            await STATE.system.close()


app = FastAPI(lifespan=lifespan)


async def enqueue() -> dict[str, str]:
    """What a web handler that hands its work to a job queue does."""
    i = STATE.served
    STATE.served += 1
    assert STATE.system is not None
    job_id = await STATE.system.enqueue("noop", i)
    return {"id": job_id}


async def no_enqueue() -> dict[str, str]:
    """The same handler without its enqueue line: what the web stack alone costs."""
    i = STATE.served
    STATE.served += 1
    job_id = str(i)
    return {"id": job_id}


async def awaits_nothing() -> dict[str, str]:
    """The same handler awaiting one future the loop resolves at once: what suspending and
    resuming the handler costs the web stack, whatever it awaits."""
    i = STATE.served
    STATE.served += 1
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done
    return {"id": str(i)}


@app.get("/served")
async def served() -> dict[str, int]:
    return {"served": STATE.served}


ENDPOINTS = {BASELINE: no_enqueue, AWAITED: awaits_nothing}
app.add_api_route("/enqueue", ENDPOINTS.get(SYSTEM, enqueue), methods=["POST", "GET"])
