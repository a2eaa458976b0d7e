"""The HTTP benchmark's server: a FastAPI app whose endpoint enqueues one job per request.

``uvicorn benchmarks.http_app:app`` in a process of its own (``benchmarks/web.py`` starts it,
one worker process); the environment says what it serves:

- ``BENCH_HTTP_SYSTEM``: a system of ``benchmarks.adapter.SYSTEMS``, whose plain one-job enqueue
  the endpoint awaits; or a reference: ``baseline``, the same endpoint without the enqueue line;
  ``awaited``, awaiting a no-op future instead; ``roundtrip``, awaiting one raw Redis PING instead;
- ``BENCH_HTTP_URL``, ``BENCH_HTTP_QUEUE``: the Redis and the queue.

``POST /enqueue`` (``GET`` too) enqueues ``noop(i)``, ``i`` counting the requests, and returns
``{"id": <the job's id>}``; ``GET /served`` says how many requests the endpoint answered.
"""

from __future__ import annotations

import asyncio
import collections
import os
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .adapter import System, load_system

BASELINE = "baseline"
AWAITED = "awaited"  # the endpoint awaits one no-op future in place of the enqueue
ROUNDTRIP = "roundtrip"  # the endpoint awaits one raw Redis PING in place of the enqueue
REFERENCES = (BASELINE, AWAITED, ROUNDTRIP)
SYSTEM = os.environ.get("BENCH_HTTP_SYSTEM", BASELINE)


class _Ping:
    """One Redis connection on a bare asyncio stream, shared by every request: each sends
    ``PING`` (pipelined with the others in flight) and awaits its ``+PONG``. The least a
    round trip to Redis can cost the handler: no client library, no command but PING."""

    def __init__(self) -> None:
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        reader, self._writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while await reader.readline():  # one +PONG line per PING, in order
            self._waiting.popleft().set_result(None)

    async def ping(self) -> None:
        assert self._writer is not None
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(done)
        self._writer.write(b"PING\r\n")
        await done

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()


class _State:
    system: System | None = None
    ping = _Ping()
    served = 0


STATE = _State()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    if SYSTEM == ROUNDTRIP:
        await STATE.ping.open(os.environ["BENCH_HTTP_URL"])
    elif SYSTEM not in REFERENCES:
        system = load_system(SYSTEM)
        await system.open(os.environ["BENCH_HTTP_URL"], os.environ["BENCH_HTTP_QUEUE"])
        await system.waiting()  # connected before the first request
        STATE.system = system
    try:
        yield
    finally:
        if STATE.system is not None:
            await STATE.system.close()
        await STATE.ping.close()


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


async def pings_redis() -> dict[str, str]:
    """The same handler awaiting one round trip to Redis (``_Ping``): what waiting on the
    network, however little, costs the web stack (each request lives on across loop turns)."""
    i = STATE.served
    STATE.served += 1
    await STATE.ping.ping()
    return {"id": str(i)}


@app.get("/served")
async def served() -> dict[str, int]:
    return {"served": STATE.served}


ENDPOINTS = {BASELINE: no_enqueue, AWAITED: awaits_nothing, ROUNDTRIP: pings_redis}
app.add_api_route("/enqueue", ENDPOINTS.get(SYSTEM, enqueue), methods=["POST", "GET"])
