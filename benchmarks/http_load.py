"""Load generators for the HTTP benchmark: ``hey`` (Debian's ``hey`` package), and a small asyncio
loop of the same shape used only where ``hey`` is not installed.

Both send ``requests`` requests over ``clients`` keep-alive connections, ``requests // clients``
each (as ``hey -n -c`` does), and give a ``Load``: the wall time, the latency percentiles, the
status codes and the requests that got no answer at all.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field

from .measure import percentile

LOADERS = ("auto", "hey", "python")


@dataclass
class Load:
    loader: str
    requests: int  # sent
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)  # status code -> responses
    errors: int = 0  # requests with no response (connection refused or reset, timeouts)

    @property
    def failed(self) -> int:
        """Requests that did not succeed: no response, or a response other than 2xx."""
        return self.errors + sum(n for code, n in self.statuses.items() if not 200 <= code < 300)


def pick(loader: str) -> str:
    """The loader to use: ``auto`` is ``hey`` when it is on the PATH, else ``python``."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {', '.join(LOADERS)}, not {loader!r}")
    if loader == "auto":
        return "hey" if shutil.which("hey") else "python"
    if loader == "hey" and not shutil.which("hey"):
        raise RuntimeError("loader 'hey' is not installed: apt-get install -y hey")
    return loader


async def drive(loader: str, url: str, *, requests: int, clients: int) -> Load:
    if clients < 1 or requests < clients:
        raise ValueError(f"requests ({requests}) must be at least clients ({clients}), and clients at least 1")
    if loader == "hey":
        return await run_hey(url, requests=requests, clients=clients)
    return await python_load(url, requests=requests, clients=clients)


# -- hey ---------------------------------------------------------------------------------------


async def run_hey(url: str, *, requests: int, clients: int, cpus: int = 1) -> Load:
    """``hey -n requests -c clients -m POST url`` on ``cpus`` cores (the rest is the server's and Redis's)."""
    proc = await asyncio.create_subprocess_exec(
        "hey", "-n", str(requests), "-c", str(clients), "-m", "POST", "-cpus", str(cpus), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"hey exited with code {proc.returncode}: {err.decode(errors='replace')[-300:]}")
    return parse_hey(out.decode(), sent=requests // clients * clients)


_NUMBER = r"([0-9.]+)"


def parse_hey(text: str, *, sent: int) -> Load:
    """A ``Load`` from hey's summary output."""

    def seconds(label: str) -> float:
        m = re.search(rf"^\s*{label}:\s+{_NUMBER} secs", text, re.MULTILINE)
        if not m:
            raise ValueError(f"hey's output has no {label!r} line:\n{text[:2000]}")
        return float(m.group(1))

    def pct(p: int) -> float:
        m = re.search(rf"^\s*{p}%+ in {_NUMBER} secs", text, re.MULTILINE)
        return float(m.group(1)) * 1000 if m else float("nan")

    rps = re.search(rf"^\s*Requests/sec:\s+{_NUMBER}", text, re.MULTILINE)
    statuses = {int(code): int(n) for code, n in re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", text, re.MULTILINE)}
    errors_at = text.find("Error distribution:")
    errors = (
        sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", text[errors_at:], re.MULTILINE)) if errors_at >= 0 else 0
    )
    return Load("hey", sent, seconds("Total"), float(rps.group(1)) if rps else float("nan"), pct(50), pct(99),
                statuses, errors)  # fmt: skip


# -- the fallback: an asyncio loop -------------------------------------------------------------


def _target(url: str) -> tuple[str, int, str]:
    m = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url)
    if not m:
        raise ValueError(f"expected http://HOST:PORT/PATH, not {url!r}")
    return m.group(1), int(m.group(2)), m.group(3)


async def _client(host: str, port: int, request: bytes, n: int, lat: list[float], codes: Counter[int]) -> int:
    """``n`` requests on one keep-alive connection (a new one after an error): the errors."""
    errors, reader, writer = 0, None, None
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            status, length = await read_response(reader)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        lat.append((time.perf_counter() - t0) * 1000)
        codes[status] += 1
    if writer is not None:
        writer.close()
    return errors


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """The status code and Content-Length of one response, its head read."""
    head = await reader.readline()
    if not head:
        raise ConnectionResetError("the server closed the connection without an answer")
    status = int(head.split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, length


async def python_load(url: str, *, requests: int, clients: int) -> Load:
    """The same load as ``hey -n requests -c clients -m POST`` from an asyncio loop (slower: it
    costs more CPU per request than hey, so rates are lower than hey's on a busy machine)."""
    host, port, path = _target(url)
    request = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n\r\n".encode()
    each = requests // clients
    lat: list[float] = []
    codes: Counter[int] = Counter()
    t0 = time.perf_counter()
    errors = await asyncio.gather(*(_client(host, port, request, each, lat, codes) for _ in range(clients)))
    seconds = time.perf_counter() - t0
    lat.sort()
    nan = float("nan")
    return Load("python", each * clients, seconds, len(lat) / seconds,
                percentile(lat, 50) if lat else nan, percentile(lat, 99) if lat else nan,
                dict(codes), sum(errors))  # fmt: skip
