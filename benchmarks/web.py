"""The HTTP benchmark: a FastAPI endpoint that enqueues one job per request (``http_app.py``),
served by uvicorn in a process of its own (one worker process) on a free loopback port, driven
by a load generator (``http_load.py``: ``hey``, or an asyncio loop where hey is missing).

Every run checks its work: every request answered 2xx, the endpoint answered each one, and the
queue holds one job per request (the ``baseline``, the endpoint without its enqueue line, holds
none), or the run raises ``BenchError`` and its figures are not reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from . import http_load
from .adapter import System
from .measure import BenchError, Context, Outcome, check, cpu_seconds

READY_TIMEOUT = 30.0  # seconds for uvicorn to start answering


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(log: IO[bytes], chars: int = 800) -> str:
    log.seek(0)
    return log.read().decode(errors="replace").strip()[-chars:]


@dataclass
class Server:
    port: int
    pid: int
    log: IO[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_error(self) -> str:
        """The last exception line uvicorn logged (why a request was answered 500), if any."""
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        found = re.findall(r"^([\w.]*(?:Error|Exception)\b.*)$", text, re.MULTILINE)
        return found[-1][:200] if found else ""


@contextlib.asynccontextmanager
async def server(ctx: Context) -> AsyncIterator[Server]:
    """uvicorn serving ``benchmarks.http_app:app`` for ``ctx.system`` (one process; the run's
    event loop), once it answers; stopped gracefully (SIGTERM) at the end."""
    port = free_port()
    env = os.environ | {"BENCH_HTTP_SYSTEM": ctx.system, "BENCH_HTTP_URL": ctx.url, "BENCH_HTTP_QUEUE": ctx.queue}
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.http_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--loop", "uvloop" if ctx.uvloop else "asyncio", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log, cwd=ctx.root, env=env)
        try:
            await _until_up(proc, port, log)
            yield Server(port, proc.pid, log)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _until_up(proc: asyncio.subprocess.Process, port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.returncode is not None:
            raise BenchError(f"uvicorn exited with code {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            status, _ = await get(port, "/served")
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"uvicorn did not answer within {READY_TIMEOUT:g}s: {_tail(log)}")
        await asyncio.sleep(0.05)


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One request on a connection of its own: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
        status, length = await http_load.read_response(reader)
        return status, await reader.readexactly(length)
    finally:
        writer.close()


async def warm_up(port: int, n: int, baseline: bool) -> None:
    """``n`` requests, 10 at a time, each checked: 200 and a job id of its own."""
    ids: set[str] = set()
    for at in range(0, n, 10):
        answers = await asyncio.gather(*(get(port, "/enqueue", "POST") for _ in range(min(10, n - at))))
        for status, body in answers:
            if status != 200:
                raise BenchError(f"a warm-up request was answered {status}: {body[:300]!r}")
            ids.add(json.loads(body)["id"])
    if not baseline and (len(ids) != n or "" in ids):
        raise BenchError(f"{n} warm-up requests gave {len(ids)} distinct job ids")


async def http(ctx: Context, system: System, *, requests: int, clients: int, warmup: int, loader: str) -> Outcome:
    """``requests`` POSTs from ``clients`` concurrent clients to an endpoint that enqueues one job each."""
    chosen = http_load.pick(loader)
    baseline = system.name in ("baseline", "awaited", "roundtrip")  # references: they store no job
    async with server(ctx) as s:
        await warm_up(s.port, warmup, baseline)
        cpu0 = cpu_seconds(s.pid)
        load = await http_load.drive(chosen, s.base + "/enqueue", requests=requests, clients=clients)
        cpu = cpu_seconds(s.pid) - cpu0
        _, body = await get(s.port, "/served")
        error = s.last_error()
    served = int(json.loads(body)["served"])
    if load.failed:
        raise BenchError(f"{load.failed} of {load.requests} requests failed: {load.errors} without an answer, "
                         f"statuses {load.statuses} ({load.rps:,.0f} requests/s); the server's last error: "
                         f"{error or 'none logged'}")  # fmt: skip
    check("requests the endpoint answered", served, warmup + load.requests)
    stored = served if baseline else await system.waiting()
    if not baseline:
        check("jobs stored", stored, warmup + load.requests)
    return Outcome(
        {"http_rps": load.rps, "http_p50_ms": load.p50_ms, "http_p99_ms": load.p99_ms, "http_failed": load.failed,
         "http_server_cpu_us": cpu / load.requests * 1e6},
        {"loader": load.loader, "requests": load.requests, "served": served, "stored": stored,
         "statuses": {str(k): v for k, v in load.statuses.items()}, "seconds": load.seconds},
    )  # fmt: skip
