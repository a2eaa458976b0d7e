"""Helpers for tests, ours and our users': a throwaway ``redis-server`` and ``drain``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .pool import Pool
from .queue import Queue


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free loopback port, in a temporary directory.

    It can be stopped, killed and restarted on the same port and directory, so
    tests can cut Redis away from a running pool. ``appendonly=True`` turns on
    AOF with ``appendfsync always``, so a restart keeps every acknowledged write.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        executable: str = "redis-server",
    ) -> None:
        exe = shutil.which(executable)
        if exe is None:
            raise RuntimeError(f"{executable} not found: install it (apt-get install -y redis-server)")
        self.executable = exe
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = extra_args
        self._tmp = tempfile.TemporaryDirectory(prefix="aiotaskq-redis-")
        self.dir = Path(self._tmp.name)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.dir}/redis.log")
            if self._ping():
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                auth = b""
                if self.password:
                    pw = self.password.encode()
                    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
                s.sendall(auth + b"PING\r\n")
                data = b""
                while b"PONG" not in data and b"LOADING" not in data:
                    chunk = s.recv(256)
                    if not chunk:
                        return False
                    data += chunk
                return b"PONG" in data
        except OSError:
            return False

    def stop(self) -> None:
        """Terminate (SIGTERM) and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash or power loss would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def drain(queue: Queue, *, timeout: float = 30.0, **pool_options: Any) -> None:
    """Run a pool on ``queue`` until no job is queued, due or active, then stop it.

    Jobs scheduled for later than now are left alone. Raises TimeoutError if the
    queue is not drained within ``timeout`` seconds.
    """
    pool = Pool(queue, **pool_options)
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            while True:
                await anyio.sleep(0.02)
                counts = await queue.counts()
                due = await queue.redis.zcount(queue.keys.scheduled, "-inf", int(time.time() * 1000))
                if not counts[_QUEUED] and not counts[_ACTIVE] and not due:
                    break
            pool.stop()


from .job import JobStatus  # noqa: E402

_QUEUED = JobStatus.QUEUED
_ACTIVE = JobStatus.ACTIVE
