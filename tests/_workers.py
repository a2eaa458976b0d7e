"""Worker subprocesses for the fault tests (``python -m aiotaskq worker tests.apps.faultapp:queue``)
and the conditions they wait on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from aiotaskq import Queue

ROOT = Path(__file__).resolve().parents[1]
# Small intervals: a silent pool is declared dead after 1.5 s.
FAST = ["--poll-interval", "0.2", "--heartbeat-interval", "0.3", "--stale-timeout", "1.5"]


class Worker:
    """One ``aiotaskq worker`` subprocess; its log goes to a file."""

    def __init__(self, queue: Queue, url: str, log_path: Path, *flags: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["FAULTAPP_QUEUE"] = queue.name
        env["FAULTAPP_SHARDS"] = str(queue.shards)
        env["AIOTASKQ_REDIS_URL"] = url
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aiotaskq", "worker", "tests.apps.faultapp:queue", *flags],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.pid = self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def exited(self, timeout: float) -> int:
        """The exit code, once the process has exited (subprocess.TimeoutExpired after ``timeout``)."""
        return await anyio.to_thread.run_sync(self.process.wait, timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(10)


class Workers:
    """Starts worker subprocesses; every one of them is killed at the end of the block."""

    def __init__(self, queue: Queue, url: str, tmp_path: Path) -> None:
        self.queue, self.url, self.tmp_path = queue, url, tmp_path
        self.started: list[Worker] = []

    def start(self, *flags: str, defaults: bool = False) -> Worker:
        """A worker with the small intervals of FAST, or with the Pool's defaults."""
        fast = [] if defaults else FAST
        w = Worker(self.queue, self.url, self.tmp_path / f"worker{len(self.started)}.log", *fast, *flags)
        self.started.append(w)
        return w


@contextmanager
def workers(queue: Queue, url: str, tmp_path: Path) -> Iterator[Workers]:
    ws = Workers(queue, url, tmp_path)
    try:
        yield ws
    finally:
        for w in ws.started:
            w.kill()


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.02)


async def runs(queue: Queue, marker: str) -> int:
    """How many times a faultapp task with this marker started."""
    return int(await queue.redis.get(marker) or 0)


async def pool_ids(queue: Queue) -> list[str]:
    raw: list[bytes] = await queue.redis.zrange(queue.keys.pools, 0, -1)  # type: ignore[assignment]
    return [x.decode() for x in raw]


def marker_for(queue: Queue) -> str:
    return queue.keys.prefix + "test:runs"
