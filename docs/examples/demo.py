"""``make demo``: a worker subprocess and a producer, showing jobs flowing through aiotaskq.

Run from the repository root: ``python docs/examples/demo.py``. It

1. starts a throwaway ``redis-server`` on a free port, unless ``AIOTASKQ_REDIS_URL`` names a Redis;
2. starts a worker: ``python -m aiotaskq worker docs.examples.demo_tasks:queue``;
3. enqueues immediate, delayed, prioritised and failing-then-retried jobs, shows a progress line,
   waits for the results and prints a summary;
4. stops the worker (SIGTERM) and the ``redis-server`` it started -- also on Ctrl-C.

Each run uses a queue of its own, so runs against a shared Redis never see each other's jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
from redis.exceptions import RedisError

from aiotaskq import Job, JobCancelled, JobFailed, JobInfo, JobStatus, Queue
from aiotaskq.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script, Python puts docs/examples on the path, not the root

CONCURRENCY = 4
WAIT_LIMIT = 60.0  # seconds; the demo itself takes about 10


@dataclass
class Run:
    """What the producer enqueued and what became of it."""

    started: float = field(default_factory=time.monotonic)
    jobs: dict[str, list[Job]] = field(default_factory=dict)
    infos: dict[str, JobInfo] = field(default_factory=dict)

    def add(self, kind: str, jobs: list[Job | None]) -> None:
        self.jobs.setdefault(kind, []).extend(j for j in jobs if j is not None)

    def all_jobs(self) -> list[Job]:
        return [j for jobs in self.jobs.values() for j in jobs]

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class WorkerDied(Exception):
    """The worker subprocess exited while the demo still needed it."""


# -- the producer ------------------------------------------------------------------------------


async def enqueue_all(run: Run) -> None:
    from docs.examples import demo_tasks as t  # imported late: it reads AIOTASKQ_DEMO_QUEUE

    # A backlog of priority-0 jobs: 20 coroutines and 8 plain functions (run in threads).
    run.add("email", await t.send_email.enqueue_many([(user_id,) for user_id in range(1, 21)]))
    run.add("resize", await t.resize_image.enqueue_many([(f"photo-{i}.jpg", 640) for i in range(1, 9)]))
    # Enqueued last, with priority 10 (the task's default): they run before the backlog.
    run.add("charge", await t.charge_card.enqueue_many([(1001, 4999), (1002, 1250), (1003, 899)]))
    # Fails its first attempt, succeeds on the retry after a backoff of at most 0.3 s.
    run.add("retried", await t.sync_inventory.enqueue_many([("SKU-1",), ("SKU-2",)]))
    # Fails twice (one retry), then stays `failed` with its error and traceback.
    run.add("failed", [await t.import_contacts.enqueue("https://example.com/contacts.csv")])
    # Delayed: one by a delay, one at a given time; the job id deduplicates a second enqueue.
    run.add("delayed", [await t.build_report.options(delay=4).enqueue("daily")])
    at = datetime.now(UTC) + timedelta(seconds=9)
    weekly_report = t.build_report.options(at=at, job_id=f"report:weekly:{at:%Y%m%d%H%M%S}")
    weekly = await weekly_report.enqueue("weekly")
    duplicate = await weekly_report.enqueue("weekly")
    assert duplicate is None, "a second enqueue with the same job_id must be deduplicated"
    run.add("delayed", [weekly])
    print(
        f"enqueued {len(run.all_jobs())} jobs (and 1 duplicate, dropped by its job_id):\n"
        "  20 x demo.send_email      immediate (coroutine, 0.5 s each)\n"
        "   8 x demo.resize_image    immediate (plain function, run in a thread, 0.6 s each)\n"
        "   3 x demo.charge_card     priority 10, enqueued after the 28 above\n"
        "   2 x demo.sync_inventory  fail their first attempt, retried after a short backoff\n"
        "   1 x demo.import_contacts always fails: 1 retry, then `failed`\n"
        "   2 x demo.build_report    one delayed by 4 s, one at a time 9 s from now\n"
    )


async def wait_for_worker() -> None:
    from docs.examples import demo_tasks as t

    sent = time.monotonic()
    job = await t.ping.enqueue()
    assert await job.result(timeout=WAIT_LIMIT) == "pong"
    print(f"worker is up: a ping job came back {(time.monotonic() - sent) * 1000:.0f} ms after it was enqueued")


async def wait_for_end(job: Job) -> None:
    with contextlib.suppress(JobFailed, JobCancelled):  # the summary reads every outcome afterwards
        await job.result()


class Progress:
    """One status line: rewritten in place on a terminal, else printed again when it changes."""

    def __init__(self, queue: Queue, run: Run) -> None:
        self.queue = queue
        self.run = run
        self.tty = sys.stdout.isatty()
        self.last = ""

    async def show(self, *, final: bool = False) -> None:
        counts = await self.queue.counts()
        state = "  ".join(f"{status.value} {n:2d}" for status, n in counts.items())
        line = f"{self.run.elapsed():5.1f}s  {state}"
        if self.tty:
            print(f"\r{line}\x1b[K", end="\n" if final else "", flush=True)
        elif state != self.last or final:
            print(line, flush=True)
        self.last = state

    async def loop(self) -> None:
        while True:
            await self.show()
            await anyio.sleep(0.1)


async def follow(queue: Queue, run: Run) -> None:
    """Wait for every job to end, showing progress, then read each job's final state."""
    progress = Progress(queue, run)
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.loop)
        async with anyio.create_task_group() as waiters:
            for job in run.all_jobs():
                waiters.start_soon(wait_for_end, job)
        tg.cancel_scope.cancel()
    await progress.show(final=True)
    for job in run.all_jobs():
        run.infos[job.id] = await job.info()


async def watch_worker(worker: subprocess.Popen[bytes]) -> None:
    while worker.poll() is None:  # noqa: ASYNC110 - a child's exit status has no event to wait on
        await anyio.sleep(0.1)
    raise WorkerDied(f"the worker exited with code {worker.returncode}")


async def produce(url: str, worker: subprocess.Popen[bytes]) -> Run:
    from docs.examples import demo_tasks as t

    queue = t.queue
    queue.use_url(url)
    run = Run()
    try:
        async with queue, anyio.create_task_group() as tg:
            tg.start_soon(watch_worker, worker)
            with anyio.fail_after(WAIT_LIMIT):
                await wait_for_worker()
                run.started = time.monotonic()
                await enqueue_all(run)
                await follow(queue, run)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None
    return run


def _first_leaf(exc: BaseException) -> BaseException:
    """The error inside (nested) exception groups of task groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


# -- the summary -------------------------------------------------------------------------------


def _offset(a: datetime | None, b: datetime | None) -> float:
    return (a - b).total_seconds() if a is not None and b is not None else float("nan")


def _call(info: JobInfo) -> str:
    return f"{info.task}({', '.join(repr(a) for a in info.args)})"


def _started_after(job: JobInfo, others: list[JobInfo]) -> int:
    if job.started_at is None:
        return 0
    return sum(1 for o in others if o.started_at is not None and o.started_at > job.started_at)


def summarize(run: Run) -> list[str]:
    """Print what happened; returns what did not go as the demo expects (empty when all did)."""
    info = {kind: [run.infos[j.id] for j in jobs] for kind, jobs in run.jobs.items()}
    backlog = info["email"] + info["resize"]
    print("\nsummary (from the stored job records)")
    ahead = ", ".join(str(_started_after(c, backlog)) for c in info["charge"])
    print(
        f"  priority  {len(info['charge'])} x demo.charge_card (priority 10, enqueued last) started before "
        f"{ahead} of the {len(backlog)} priority-0 jobs"
    )
    for report in info["delayed"]:
        due = _offset(report.scheduled_at, report.enqueued_at)
        late = _offset(report.started_at, report.scheduled_at) * 1000
        print(f"  delayed   {_call(report)}: due {due:.1f} s after it was enqueued, started {late:.0f} ms late")
    for retried in info["retried"]:
        print(
            f"  retried   {_call(retried)}: {retried.status.value} on attempt {retried.attempts} "
            f"(attempt {retried.attempts - 1} failed: {retried.error})"
        )
    for failed in info["failed"]:
        print(f"  failed    {failed.task}: {failed.status.value} after {failed.attempts} attempts: {failed.error}")
    example = info["resize"][0]
    print(f"  threads   {len(info['resize'])} x {example.task} ran in worker threads -> {example.result!r}, ...")
    return _unexpected(info)


def _unexpected(info: dict[str, list[JobInfo]]) -> list[str]:
    problems = []
    for kind, infos in info.items():
        want = JobStatus.FAILED if kind == "failed" else JobStatus.SUCCEEDED
        attempts = 2 if kind in ("failed", "retried") else 1
        for i in infos:
            if i.status is not want or i.attempts != attempts:
                problems.append(
                    f"{i.task}{i.args}: {i.status.value} after {i.attempts} attempt(s), "
                    f"expected {want.value} after {attempts}"
                )
    return problems


# -- starting and stopping what the demo runs --------------------------------------------------


class Processes:
    """The redis-server and the worker the demo started; ``close`` stops them, worker first."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.external_url: str | None = None
        self.server: RedisServer | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._logs = tempfile.TemporaryDirectory(prefix="aiotaskq-demo-")
        self.worker_log = Path(self._logs.name) / "worker.log"

    def start_redis(self) -> str:
        url = os.environ.get("AIOTASKQ_REDIS_URL")
        if url:
            print(f"using the Redis at $AIOTASKQ_REDIS_URL ({Queue('any', url=url).url})")
            self.external_url = url
            return url
        self.server = RedisServer()
        # A Ctrl-C in a terminal goes to the whole process group, the redis-server too. Started with
        # SIGINT blocked (children inherit the signal mask), it stays up until the worker has left.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.server.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        print(f"started a throwaway {self.server.version} ({self.server.executable}) on {self.server.url}")
        return self.server.url

    def start_worker(self, url: str) -> subprocess.Popen[bytes]:
        args = ["worker", "docs.examples.demo_tasks:queue", "--concurrency", str(CONCURRENCY)]
        if self.server is not None:  # a URL from the environment may hold a password: the worker inherits it
            args += ["--url", url]
        print("starting a worker: python -m aiotaskq", " ".join(args))
        with self.worker_log.open("wb") as log:
            self.worker = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "aiotaskq", *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops the worker itself
            )
        return self.worker

    def close(self) -> None:
        if self.worker is not None:
            self._stop_worker(self.worker)
        if self.server is not None:
            self.server.close()
            print("stopped the redis-server")
        elif self.external_url is not None:
            with contextlib.suppress(RedisError, OSError):
                n = anyio.run(forget_queue, self.external_url, self.queue_name)
                print(f"removed the demo queue's {n} keys from your Redis")
        self._logs.cleanup()

    def _stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        if worker.poll() is None:
            print("stopping the worker (SIGTERM): it finishes the jobs it runs, then leaves")
            worker.send_signal(signal.SIGTERM)
            # Without its Redis the worker cannot record anything: no use waiting long for it.
            process = self.server.process if self.server is not None else None
            redis_gone = self.server is not None and (process is None or process.poll() is not None)
            patience = 3.0 if redis_gone else 30.0
            try:
                worker.wait(patience)
            except subprocess.TimeoutExpired:
                print(f"the worker did not stop within {patience:.0f} s: killing it")
                worker.kill()
                worker.wait()
        print(f"the worker exited with code {worker.returncode}")
        if worker.returncode != 0:
            self.print_worker_log()

    def print_worker_log(self, lines: int = 30) -> None:
        with contextlib.suppress(OSError):
            tail = self.worker_log.read_text(errors="replace").splitlines()[-lines:]
            print("the worker's last log lines:", *("  | " + line for line in tail), sep="\n")


async def forget_queue(url: str, name: str) -> int:
    """Delete every key of queue ``name`` (run after its worker stopped, so nothing recreates them)."""
    async with Queue(name, url=url) as queue:
        keys = [key async for key in queue.redis.scan_iter(match=queue.keys.prefix + "*", count=1000)]
        return int(await queue.redis.delete(*keys)) if keys else 0


class _Interrupted:
    flag = False


def _interrupt(signum: int, frame: FrameType | None) -> Any:
    _Interrupted.flag = True
    raise KeyboardInterrupt


def main() -> int:
    began = time.monotonic()
    # Our own handler (asyncio then installs none): Ctrl-C or SIGTERM anywhere ends in clean-up.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    queue_name = f"demo-{uuid.uuid4().hex[:8]}"
    os.environ["AIOTASKQ_DEMO_QUEUE"] = queue_name  # read by demo_tasks, here and in the worker
    processes = Processes(queue_name)
    try:
        url = processes.start_redis()
        print(f"queue: {queue_name!r}")
        worker = processes.start_worker(url)
        run = anyio.run(produce, url, worker)
        problems = summarize(run)
    except (KeyboardInterrupt, WorkerDied, TimeoutError, RedisError, OSError, RuntimeError) as exc:
        return _aborted(exc, processes)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        processes.close()
    if problems:
        print("\nunexpected:", *problems, sep="\n  ")
        return 1
    took = time.monotonic() - began
    print(
        f"\ndemo finished in {took:.1f} s: {len(run.infos)} jobs, {len(run.infos) - 1} succeeded, 1 failed as intended"
    )
    return 0


def _aborted(exc: BaseException, processes: Processes) -> int:
    if _Interrupted.flag:
        print("\ninterrupted: stopping what the demo started")
        return 130
    if isinstance(exc, TimeoutError):
        print(f"\nthe jobs did not all end within {WAIT_LIMIT:.0f} s")
    elif isinstance(exc, RedisError | OSError):
        print(f"\nlost the connection to Redis: {exc}")
    else:  # WorkerDied (its log follows when it is cleaned up), or redis-server failed to start
        print(f"\n{exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
