"""The worker subprocess: one worker of one system, until a number of jobs ended.

``python -m benchmarks.worker --system S --url U --queue Q --expect N [--concurrency C] [--record KEY]``

It prints JSON lines on stdout: ``{"event": "ready"}`` once the worker serves, then
``{"event": "done", ...}`` once ``N`` jobs ended in this process *and* Redis
records ``N`` succeeded jobs. The done line carries the first job's start time,
the time Redis recorded the last outcome, and the CPU time this process used.
With ``--record KEY`` the start time of each job goes to the Redis hash ``KEY``
(field: the job's number) before the done line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from redis.asyncio import Redis

from .adapter import PROBE, System, load_system

RECORD_TIMEOUT = 60.0  # seconds for Redis to record the outcomes of jobs that already ended


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """User + system CPU time of this process (every thread)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def until(event: asyncio.Event, serving: asyncio.Task[None]) -> None:
    """Wait for ``event``; raise if the worker stopped first."""
    waiter = asyncio.create_task(event.wait())
    await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        waiter.cancel()
        serving.result()  # re-raises the worker's error
        raise RuntimeError("the worker stopped before it was asked to")


async def recorded(system: System, expect: int) -> float:
    """Poll (every ms) until Redis records ``expect`` succeeded jobs; the time it did."""
    deadline = time.monotonic() + RECORD_TIMEOUT
    while True:
        n = await system.succeeded()
        if n >= expect:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{expect} jobs ended in the worker but Redis records only {n} succeeded")
        await asyncio.sleep(0.001)


async def record_starts(url: str, key: str) -> None:
    async with Redis.from_url(url) as r:
        items = list(PROBE.starts.items())
        for at in range(0, len(items), 1000):
            await r.hset(key, mapping={str(i): repr(t) for i, t in items[at : at + 1000]})


async def main(args: argparse.Namespace) -> None:
    system = load_system(args.system)
    PROBE.configure(expect=args.expect, record=bool(args.record))
    await system.open(args.url, args.queue)
    ready, stop = asyncio.Event(), asyncio.Event()
    cpu0 = cpu_seconds()
    serving = asyncio.create_task(system.serve(args.concurrency, ready.set, stop))
    try:
        await until(ready, serving)
        emit("ready")
        await until(PROBE.all_done, serving)
        done_at = await recorded(system, args.expect)
        cpu = cpu_seconds() - cpu0
        if args.record:
            await record_starts(args.url, args.record)
        emit(
            "done",
            first_start=PROBE.first_start,
            last_end=PROBE.last_end,
            recorded_at=done_at,
            cpu_s=cpu,
            jobs=PROBE.done,
        )
    finally:
        stop.set()
        await serving
        await system.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("--system", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--record", default="")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
