"""How the workloads measure: worker processes, Redis-side figures, and draining a queue.

The producer starts the system's worker processes (``benchmarks.worker``), lets them go
together, and polls the system's ``unfinished()`` count every ``POLL`` seconds: a drain ends
when Redis records the jobs as ended. Then it tells the workers to stop and collects what
their probes saw. Times are ``time.time()`` of the same machine in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from redis.asyncio import Redis

from .adapter import System

SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
POLL = 0.005  # seconds between two looks at the unfinished count while workers drain
STALL = 60.0  # a drain whose unfinished count stays put this long has stalled


class BenchError(Exception):
    """The run did not do the work it was given (jobs lost or run twice, a worker died, ...)."""


@dataclass(frozen=True)
class Context:
    system: str
    url: str
    queue: str
    root: Path  # the directory holding the ``benchmarks`` package
    uvloop: bool = False


@dataclass
class Outcome:
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of this process (every thread), or of process ``pid`` (Linux)."""
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 3.. of proc(5)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- worker processes --------------------------------------------------------------------------


class WorkerProcess:
    """``python -m benchmarks.worker`` for one system and queue; what it writes on stderr
    (the system's own logging) goes to a file, quoted when the worker fails."""

    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, ctx: Context, *, concurrency: int, record: str = "") -> WorkerProcess:
        cmd = [sys.executable, "-m", "benchmarks.worker", "--system", ctx.system, "--url", ctx.url,
               "--queue", ctx.queue, "--concurrency", str(concurrency), "--record", record]  # fmt: skip
        if ctx.uvloop:
            cmd.append("--uvloop")
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ctx.root
        )
        return cls(proc, log)

    def log_tail(self, chars: int = 600) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return text[-chars:]

    async def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(line + b"\n")
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    async def next_event(self, name: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                code = await self.proc.wait()
                raise BenchError(f"a worker exited with code {code} before {name!r}: {self.log_tail()}")
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # not ours: something the system printed
            if isinstance(event, dict) and event.get("event") == name:
                return event

    async def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Tell the worker to stop: its stopping event (CPU time, first start) updated with its
        done event (the jobs run in all), or with a note when it does not stop in time."""
        await self.send(b"stop")
        event = await self.next_event("stopping")
        try:
            event |= await asyncio.wait_for(self.next_event("done"), timeout)
        except (TimeoutError, BenchError) as exc:
            event["note"] = f"a worker did not report the end of its shutdown within {timeout:g}s ({exc})"
            event["failed_on_purpose"] = -1
        return event

    async def close(self, timeout: float = 15.0) -> str:
        """Wait for the worker to exit; kill it after ``timeout``. A note when it did not exit cleanly."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            code = None
        tail = self.log_tail(300).replace("\n", " | ")
        self.log.close()
        if code is None:
            return f"a worker did not exit within {timeout:g}s of being told to stop, and was killed"
        return f"a worker exited with code {code} after its work: {tail}" if code else ""


class Workers:
    """``n`` worker processes on one queue, all ready before the clock starts."""

    def __init__(self, procs: list[WorkerProcess]) -> None:
        self.procs = procs
        self.notes: list[str] = []

    @classmethod
    async def start(cls, ctx: Context, n: int, *, concurrency: int, record: str = "") -> Workers:
        """Start ``n`` worker processes; once all are loaded and connected, let them go together."""
        procs = [await WorkerProcess.start(ctx, concurrency=concurrency, record=record) for _ in range(n)]
        workers = cls(procs)
        try:
            await asyncio.gather(*(p.next_event("loaded") for p in procs))
            await asyncio.gather(*(p.send(b"go") for p in procs))
            await asyncio.gather(*(p.next_event("ready") for p in procs))
        except BaseException:
            await workers.close()
            raise
        return workers

    async def stop(self) -> list[dict[str, Any]]:
        events = list(await asyncio.gather(*(p.stop() for p in self.procs)))
        self.notes += [e["note"] for e in events if "note" in e]
        self.notes += [f"a worker failed to shut down cleanly: {e['shutdown_error']}" for e in events
                       if e.get("shutdown_error")]  # fmt: skip
        return events

    async def close(self) -> None:
        notes = await asyncio.gather(*(p.close() for p in self.procs))
        self.notes += [n for n in notes if n]


# -- Redis-side figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStats:
    commands: int
    reads: int
    cpu: float  # seconds of CPU the redis-server process used (user + system)
    calls: dict[str, int]

    @classmethod
    async def take(cls, r: Redis) -> ServerStats:
        info = await r.info("all")  # one INFO command: counted, and subtracted below
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return cls(int(info["total_commands_processed"]), int(info["total_reads_processed"]), cpu, calls)

    def since(self, before: ServerStats) -> dict[str, float]:
        """Commands by name since ``before``, and the totals ("*commands", "*reads"), less the INFOs."""
        delta: dict[str, float] = {name: n - before.calls.get(name, 0) for name, n in self.calls.items()}
        info = delta.pop("info", 0)
        delta = {name: n for name, n in delta.items() if n}
        delta["*commands"] = self.commands - before.commands - info
        delta["*reads"] = self.reads - before.reads - info
        delta["*cpu"] = self.cpu - before.cpu
        return delta


def less(delta: dict[str, float], cost: dict[str, float], times: float) -> dict[str, float]:
    """``delta`` without ``times`` times ``cost`` (what the harness's own polling did)."""
    return {k: v - cost.get(k, 0.0) * times for k, v in delta.items()}


def per_job(delta: dict[str, float], jobs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Commands (all, those Lua scripts run included), script calls and socket reads per job;
    and the per-command breakdown."""
    metrics = {
        "cmds_per_job": delta["*commands"] / jobs,
        "script_calls_per_job": sum(delta.get(c, 0.0) for c in SCRIPT_COMMANDS) / jobs,
        "reads_per_job": delta["*reads"] / jobs,
        "redis_cpu_us_per_job": delta["*cpu"] / jobs * 1e6,
    }
    names = {k: v / jobs for k, v in delta.items() if not k.startswith("*") and v / jobs >= 0.005}
    return metrics, dict(sorted(names.items(), key=lambda kv: -kv[1]))


async def memory_used(r: Redis) -> int:
    """``used_memory`` less the clients' buffers (which come and go with the traffic)."""
    info = await r.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


# -- draining ----------------------------------------------------------------------------------


def check(what: str, n: int, expect: int) -> None:
    if n != expect:
        raise BenchError(f"{n} {what}, expected {expect}")


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear between closest ranks."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=1000, method="inclusive")[round(p * 10) - 1]


async def until_finished(system: System, *, left: int = 0, poll: float = POLL) -> tuple[float, int, int]:
    """Poll until Redis records all but ``left`` jobs of the queue as ended: (the time it
    did, the jobs then unfinished, the polls made)."""
    polls, last, since = 0, -1, time.monotonic()
    while True:
        n = await system.unfinished()
        polls += 1
        if n <= left:
            return time.time(), n, polls
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > STALL:
            raise BenchError(f"stalled: {n} jobs unfinished for {STALL:g}s")
        await asyncio.sleep(poll)


async def poll_cost(r: Redis, system: System, n: int = 20) -> dict[str, float]:
    """What one ``unfinished()`` call costs Redis, to take the harness's polling out of the figures."""
    before = await ServerStats.take(r)
    for _ in range(n):
        await system.unfinished()
    after = await ServerStats.take(r)
    return {k: v / n for k, v in after.since(before).items()}


@dataclass
class Drain:
    seconds: float  # from the first job's start to the moment Redis records the jobs as ended
    unfinished: int  # jobs Redis did not record as ended then (0 unless the drain was partial)
    events: list[dict[str, Any]]
    redis: dict[str, float]  # Redis work during the drain (the harness's polls taken out)
    notes: list[str]

    @property
    def jobs_run(self) -> int:
        return sum(int(e["jobs"]) for e in self.events)

    @property
    def failed_on_purpose(self) -> int:
        return sum(int(e["failed_on_purpose"]) for e in self.events)

    @property
    def cpu_s(self) -> float:
        return sum(float(e["cpu_s"]) for e in self.events)


async def drain_queue(
    ctx: Context, system: System, *, workers: int, concurrency: int, record: str = "", left: int = 0
) -> Drain:
    """Start ``workers`` worker processes on the filled queue and wait until all jobs but
    ``left`` ended; then stop the workers."""
    async with Redis.from_url(ctx.url) as r:
        cost = await poll_cost(r, system)
        before = await ServerStats.take(r)
        group = await Workers.start(ctx, workers, concurrency=concurrency, record=record)
        try:
            end, unfinished, polls = await until_finished(system, left=left)
            after = await ServerStats.take(r)
            events = await group.stop()
        finally:
            await group.close()
    starts = [float(e["first_start"]) for e in events if e["first_start"] is not None]
    if not starts:
        raise BenchError("no job started")
    return Drain(end - min(starts), unfinished, events, less(after.since(before), cost, polls), group.notes)
