"""A loopback TCP proxy in front of Redis that the harness can cut, two ways.

``cut("reset")``: every connection is reset (RST to the client, FIN to Redis) and the port
stops listening, so reconnects are refused, as when a host or a firewall rejects traffic.

``cut("blackhole")``: nothing flows any more, and nothing says so. As partitions often
begin, one direction dies first: for ``one_way`` seconds requests still reach Redis (and
run) but no reply comes back; then requests are lost too. Open connections stay open on
the client's side but are dropped on Redis's side, as Redis (or a NAT, or a firewall)
forgets a peer it cannot reach; new connections are accepted and held silent. After
``restore()`` a held connection behaves like a half-open TCP connection after a partition
heals: the first bytes the client sends on it (or had sent during the cut, which TCP would
retransmit) draw a reset, while a client that only waits to read (for the reply to a request
it sent before, or on a pub/sub subscription) waits forever. New connections work at once.

``cut("partition")``: nothing flows any more in either direction, and both ends keep their
connections, as in a real partition: neither kernel hears of the other (Redis keeps a silent
peer's connection until its TCP keepalive gives up, minutes later). What either side sent or
closed during the cut is delivered once restored; a connection opened during the cut reaches
Redis only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from aiotaskq.testing import free_port

Mode = Literal["reset", "blackhole", "partition"]
MODES: tuple[Mode, ...] = ("reset", "blackhole", "partition")


def parse_modes(text: str, allowed: tuple[Mode, ...] = MODES) -> list[Mode]:
    """A run's ``modes`` parameter ("reset,blackhole"), checked against the modes it supports."""
    out: list[Mode] = []
    for m in text.split(","):
        mode = next((a for a in allowed if a == m), None)
        if mode is None:
            raise ValueError(f"modes: unknown cut mode {m!r} (known: {', '.join(allowed)})")
        out.append(mode)
    return out


_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """A client connection, pumped to Redis while the proxy is up."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sent_while_frozen: bool = False
    last_request: bytes = b""  # the start of what the client sent last (RESP), for diagnosis


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """``127.0.0.1:<port>`` -> ``upstream``; ``url`` is the Redis URL through the proxy."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.state: Literal["up", "reset", "blackhole", "partition"] = "up"
        self._flowing = asyncio.Event()  # cleared while partitioned
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._frozen: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"accepted": 0, "reset at cut": 0, "held silent": 0, "reset after restore": 0}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def still_frozen(self) -> int:
        """Held connections whose client has sent nothing since: a reader waiting on one waits forever."""
        return len(self._frozen)

    def frozen_requests(self) -> list[bytes]:
        """The last request sent on each connection still held silent (what its client still waits for)."""
        return [link.last_request for link in self._frozen]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self, mode: Mode, *, one_way: float = 1.0) -> None:
        """Cut; for a blackhole, returns once requests are lost too (after ``one_way`` seconds)."""
        if self.state != "up":
            raise RuntimeError(f"cut: the proxy is already cut ({self.state})")
        self.state = mode
        if mode == "partition":
            self._flowing.clear()
            return
        if mode == "reset":
            self._stop_listening()
            for link in list(self._links):
                self._unlink(link)
                _reset(link.writer)
                self.stats["reset at cut"] += 1
            return
        for link in list(self._links):
            link.tasks[1].cancel()  # replies are lost from now on
        await asyncio.sleep(one_way)
        for link in list(self._links):
            self._unlink(link)
            self._freeze(link)

    async def restore(self) -> None:
        if self.state == "reset":
            await self.start()
        self.state = "up"
        self._flowing.set()
        for link in list(self._frozen):
            if link.sent_while_frozen:  # TCP retransmits it now, and the far end answers with RST
                self._drop_frozen(link)

    async def close(self) -> None:
        self._stop_listening()
        for link in list(self._links):
            self._unlink(link)
            link.writer.transport.abort()
        for link in list(self._frozen):
            self._frozen.discard(link)
            link.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- connections ---------------------------------------------------------------------------

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["accepted"] += 1
        link = _Link(reader, writer)
        await self._flowing.wait()  # partitioned: the connection reaches Redis once restored
        if self.state == "blackhole":
            self._freeze(link)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        state: str = self.state  # it may have changed while we connected
        if state != "up":  # cut while connecting
            up_writer.transport.abort()
            if state == "blackhole":
                self._freeze(link)
            else:
                _reset(writer)
            return
        link.upstream = up_writer
        self._links.add(link)
        link.tasks = [
            self._spawn(self._pump(link, reader, up_writer)),
            self._spawn(self._pump(link, up_reader, writer)),
        ]

    async def _pump(self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        requests = src is link.reader
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._flowing.wait()
                data = await src.read(_CHUNK)
                if not data:
                    break
                if requests:
                    link.last_request = data[:200]
                await self._flowing.wait()  # read as a partition began: delivered once it heals
                dst.write(data)
                await dst.drain()
        await self._flowing.wait()
        # One side closed: close the other, as a real connection would.
        if link in self._links:
            self._unlink(link, current=asyncio.current_task())
            link.writer.close()

    def _unlink(self, link: _Link, current: asyncio.Task[object] | None = None) -> None:
        self._links.discard(link)
        for task in link.tasks:
            if task is not current:
                task.cancel()
        if link.upstream is not None:
            link.upstream.transport.abort()
            link.upstream = None

    def _freeze(self, link: _Link) -> None:
        self.stats["held silent"] += 1
        self._frozen.add(link)
        self._spawn(self._frozen_reader(link))

    async def _frozen_reader(self, link: _Link) -> None:
        """Swallow what the client sends while cut; once restored, reset on its next bytes."""
        with contextlib.suppress(ConnectionError, OSError):
            while await link.reader.read(_CHUNK):
                if self.state == "up":
                    self._drop_frozen(link)
                    return
                link.sent_while_frozen = True
        if link in self._frozen:  # the client closed it
            self._frozen.discard(link)
            link.writer.transport.abort()

    def _drop_frozen(self, link: _Link) -> None:
        if link in self._frozen:
            self._frozen.discard(link)
            self.stats["reset after restore"] += 1
            _reset(link.writer)
