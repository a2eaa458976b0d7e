"""What every fault run shares: worker subprocesses, the run's result, and the checks on Redis."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from aiotaskq import Queue, testing

from . import app

ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A worker must not outlive the harness, even if the harness is SIGKILLed."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# -- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    """What a run measured. ``figures`` are printed and written to the docs in this order."""

    name: str
    title: str
    jobs: int = 0
    lost: int | None = None
    duplicates: int | None = None
    duplicate_bound: int | None = None
    headline: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def check(self, claim: str, ok: bool) -> bool:
        self.checks.append((claim, bool(ok)))
        return ok

    @property
    def ok(self) -> bool:
        return self.error is None and self.lost == 0 and all(ok for _, ok in self.checks)


@dataclass
class Context:
    """Where a run works: its scratch directory, its sizes, and a progress printer."""

    tmp: Path
    params: dict[str, Any]
    quick: bool
    rng: random.Random

    def say(self, text: str) -> None:
        print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


# -- worker subprocesses -------------------------------------------------------------------------


class Worker:
    """One ``python -m aiotaskq worker benchmarks.faults.app:queue`` subprocess."""

    def __init__(self, name: str, pid: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name, self.pid, self.process, self.log_path = name, pid, process, log_path

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(10)

    def rss_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) in KiB, from /proc/<pid>/status."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_count(self, text: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(text)
        except OSError:
            return 0


class Fleet:
    """Starts workers of one queue; ``close()`` kills every one still running."""

    def __init__(self, ctx: Context, queue: str, record_url: str, *, keep_result: float | None = None) -> None:
        self.ctx, self.queue, self.record_url, self.keep_result = ctx, queue, record_url, keep_result
        self.workers: list[Worker] = []

    def start(self, url: str, flags: Iterable[str], *, prefix: Iterable[str] = (), env: dict[str, str] | None = None,
              name: str = "") -> Worker:  # fmt: skip
        env = dict(env or {})
        environ = dict(os.environ)
        path = (env.pop("PYTHONPATH", None), str(ROOT), environ.get("PYTHONPATH"))
        environ["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
        environ.update(FAULTS_QUEUE=self.queue, FAULTS_RECORD_URL=self.record_url, AIOTASKQ_REDIS_URL=url)
        if self.keep_result is not None:
            environ["FAULTS_KEEP_RESULT"] = repr(self.keep_result)
        environ.update(env)
        name = name or f"w{len(self.workers)}"
        log_path = self.ctx.tmp / f"{self.queue}-{name}.log"
        python = os.environ.get("FAULTS_WORKER_PYTHON") or sys.executable  # e.g. a venv with another redis-py
        cmd = [*prefix, python, "-m", "aiotaskq", "worker", "benchmarks.faults.app:queue", "--url", url,
               "--log-level", "WARNING", *flags]  # fmt: skip
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                cmd, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
        worker = Worker(name, process.pid, process, log_path)
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def close(self) -> None:
        for w in self.workers:
            w.kill()


def pool_flags(*, concurrency: int, heartbeat: float, stale: float, poll: float = 0.5) -> list[str]:
    return ["--concurrency", str(concurrency), "--heartbeat-interval", str(heartbeat), "--stale-timeout", str(stale),
            "--poll-interval", str(poll), "--shutdown-timeout", "1"]  # fmt: skip


# -- Redis helpers -------------------------------------------------------------------------------


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, timeout: float, step: float = 0.05) -> float:
    """Poll ``cond`` until true; returns the seconds it took (TimeoutError names ``what``)."""
    t0 = time.monotonic()
    while not await cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await anyio.sleep(step)
    return time.monotonic() - t0


async def redis_ms(r: Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def pools(q: Queue) -> dict[str, float]:
    """Live pool id -> last heartbeat (Redis ms)."""
    raw: list[tuple[bytes, float]] = await q.redis.zrange(q.keys.pools, 0, -1, withscores=True)  # type: ignore[assignment]
    return {k.decode(): score for k, score in raw}


async def pool_of(q: Queue, pid: int) -> str | None:
    """The pool id a worker process registered under now (ids are host:pid:random)."""
    for pool_id in await pools(q):
        if pool_id.split(":")[-2] == str(pid):
            return pool_id
    return None


async def wait_registered(q: Queue, workers: Iterable[Worker], timeout: float) -> dict[int, str]:
    """Wait until every worker's pool is registered; pid -> pool id."""
    ids: dict[int, str] = {}
    workers = list(workers)

    async def all_in() -> bool:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker {w.name} exited with {w.process.returncode}:\n{w.log_tail()}")
            pool_id = await pool_of(q, w.pid)
            if pool_id is not None:
                ids[w.pid] = pool_id
        return len(ids) == len(workers)

    await wait_for(all_in, "the workers to register their pools", timeout)
    return ids


async def held(q: Queue, pool_id: str) -> set[str]:
    """The ids of the jobs a pool holds (its set ``pool:<id>``)."""
    raw: set[bytes] = await q.redis.smembers(q.keys.pool(pool_id))  # type: ignore[assignment]
    return {x.decode() for x in raw}


async def stats(q: Queue) -> dict[str, int]:
    raw: dict[bytes, bytes] = await q.redis.hgetall(q.keys.stats)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


async def pending(q: Queue) -> int:
    """Jobs not yet in an end state: scheduled, queued or active."""
    counts = await q.counts()
    return sum(n for status, n in counts.items() if status.value in ("scheduled", "queued", "active"))


async def wait_drained(q: Queue, jobs: int, timeout: float) -> float:
    """Wait until ``jobs`` jobs ended (by the stats counters) and nothing is pending."""

    async def drained() -> bool:
        s = await stats(q)
        return s.get("succeeded", 0) + s.get("failed", 0) >= jobs and await pending(q) == 0

    return await wait_for(drained, f"{jobs} jobs to end", timeout, step=0.1)


async def job_fields(r: Redis, q: Queue, ids: list[str], *fields: str) -> list[list[bytes | None]]:
    """``fields`` of every job (aiotaskq.testing.job_fields), in the order asked; all None
    for a job that does not exist."""
    rows = await testing.job_fields(q, ids)
    return [[None if row is None else row.get(name) for name in fields] for row in rows]


async def runs(q: Queue) -> dict[int, list[tuple[int, int]]]:
    """Every recorded start of ``fault.work``: job number -> [(pid, Redis ms)...]."""
    return {n: [(pid, redis) for pid, _, redis in starts] for n, starts in (await clocked_runs(q)).items()}


async def clocked_runs(q: Queue) -> dict[int, list[tuple[int, int, int]]]:
    """Every recorded start of ``fault.work``: job number -> [(pid, worker's own clock ms, Redis ms)...]."""
    raw: dict[bytes, bytes] = await q.redis.hgetall(q.keys.prefix + app.RUNS)  # type: ignore[assignment]
    out: dict[int, list[tuple[int, int, int]]] = {}
    for k, v in raw.items():
        pid, local, redis = v.split()
        out.setdefault(int(k.split(b":")[0]), []).append((int(pid), int(local), int(redis)))
    return out


@dataclass
class Tally:
    """Where every job of a run ended, and how often its task body ran."""

    statuses: Counter[str]
    lost: int
    never_ran: int
    duplicates: int
    extra_attempts: int


async def tally(q: Queue, ids: list[str]) -> Tally:
    """Read the end state of every job (by id) and the runs recorded by ``fault.work``."""
    rows = await job_fields(q.redis, q, ids, "status", "attempts")
    statuses: Counter[str] = Counter((row[0] or b"<missing>").decode() for row in rows)
    started = await runs(q)
    return Tally(
        statuses=statuses,
        lost=len(ids) - statuses["succeeded"],
        never_ran=sum(1 for n in range(len(ids)) if n not in started),
        duplicates=sum(len(v) - 1 for v in started.values()),
        extra_attempts=sum(int(row[1] or 0) - 1 for row in rows if row[1] is not None),
    )


async def enqueue_work(q: Queue, tasks: app.Tasks, ctx: Context, jobs: int, *, retries: int, max_ms: int,
                       first: int = 0) -> list[str]:  # fmt: skip
    """Enqueue ``fault.work(n, random 0..max_ms)`` for n in first..first+jobs-1; their ids, by n."""
    ids: list[str] = []
    bound = tasks.work.options(retries=retries)
    for start in range(first, first + jobs, 1000):
        batch = [(n, ctx.rng.randint(0, max_ms)) for n in range(start, min(first + jobs, start + 1000))]
        ids.extend(j.id for j in await bound.enqueue_many(batch) if j is not None)
    if len(ids) != jobs:
        raise RuntimeError(f"enqueued {len(ids)} of {jobs} jobs")
    return ids


def summary(values: list[float]) -> str:
    """min / median / max, in seconds."""
    if not values:
        return "n/a"
    v = sorted(values)
    return f"{v[0]:.2f} / {v[len(v) // 2]:.2f} / {v[-1]:.2f} s"


def statuses_text(c: Counter[str]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(c.items()))


def queue_name(name: str) -> str:
    return f"faults-{name}-{os.getpid()}"


@contextlib.asynccontextmanager
async def fleet(ctx: Context, result: Result, queue: str, record_url: str, *, keep_result: float | None = None
                ) -> AsyncIterator[Fleet]:  # fmt: skip
    """A Fleet whose workers are all killed at the end; if the run fails, their last log lines go in its notes."""
    f = Fleet(ctx, queue, record_url, keep_result=keep_result)
    try:
        yield f
    except BaseException:
        for w in f.workers:
            tail = w.log_tail(8)
            if tail:
                state = "alive" if w.alive() else f"exited {w.process.returncode}"
                result.notes.append(f"last log lines of worker {w.name} (pid {w.pid}, {state}):\n{tail}")
        raise
    finally:
        f.close()


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call (redis-server start/stop) off the event loop."""
    return await anyio.to_thread.run_sync(fn)
