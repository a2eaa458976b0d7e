"""The worker subprocess: one worker of one system, until the producer says stop.

``python -m benchmarks.worker --system S --url U --queue Q [--concurrency C] [--record KEY] [--uvloop]``

It prints JSON lines on stdout: ``{"event": "loaded"}`` once the system is imported and
connected; it starts the worker when a line ``go`` arrives on stdin (so several worker
processes start together), and prints ``{"event": "ready"}`` once the worker serves; then,
when a line ``stop`` (or the end of input) arrives, ``{"event": "stopping", ...}`` with
the first job's start time, the jobs that ended here so far and the CPU time this process
used since ``go``; then it stops the worker and prints ``{"event": "done", ...}`` with the
jobs that ended here in all and the attempts that failed on purpose, and exits.

The producer decides when the work is over (Redis records every job as ended), so several
worker processes can share one queue. With ``--record KEY`` the start time of each job goes
to the Redis hash ``KEY`` (field: the job's number) before the done line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import traceback
from typing import Any

from redis.asyncio import Redis

from .adapter import PROBE, load_system, run


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """User + system CPU time of this process (every thread)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def first(*aws: asyncio.Future[Any] | asyncio.Task[Any]) -> None:
    """Wait until one of ``aws`` is done; re-raise the error of a serving task that failed."""
    done, _ = await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)
    for fut in done:
        fut.result()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def record_starts(url: str, key: str) -> None:
    async with Redis.from_url(url) as r:
        items = list(PROBE.starts.items())
        for at in range(0, len(items), 1000):
            await r.hset(key, mapping={str(i): repr(t) for i, t in items[at : at + 1000]})


async def main(args: argparse.Namespace) -> None:
    system = load_system(args.system)
    PROBE.configure(record=bool(args.record))
    commands = await stdin_lines()
    await system.open(args.url, args.queue)
    emit("loaded")
    if (await commands.readline()).strip() != b"go":
        await system.close()
        return
    cpu0 = cpu_seconds()
    ready, stop = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(system.serve(args.concurrency, ready.set, stop))
    try:
        await first(asyncio.create_task(ready.wait()), serving)
        if not ready.is_set():
            raise RuntimeError("the worker stopped before it was ready")
        emit("ready")
        told = asyncio.create_task(commands.readline())
        await first(told, serving)
        if not told.done():
            raise RuntimeError("the worker stopped before it was asked to")
    except BaseException:
        stop.set()
        with contextlib.suppress(BaseException):
            await serving
        await system.close()
        raise
    emit("stopping", first_start=PROBE.first_start, cpu_s=cpu_seconds() - cpu0, jobs=PROBE.done)
    stop.set()
    error = ""
    try:
        await serving
    except (Exception, asyncio.CancelledError) as exc:  # the system's shutdown failed: say so, keep the counts
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"[:300]
    await system.close()
    if args.record:
        await record_starts(args.url, args.record)
    emit("done", last_end=PROBE.last_end, jobs=PROBE.done, failed_on_purpose=len(PROBE.failed_on_purpose),
         shutdown_error=error)  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("--system", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--record", default="")
    p.add_argument("--uvloop", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    run(main(arguments), uvloop=arguments.uvloop)
