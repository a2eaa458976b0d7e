"""The command line: ``aiotaskq worker app.tasks:queue``, ``aiotaskq info app.tasks:queue``, and
the operator's commands (``job``, ``jobs``, ``cancel``, ``requeue``, ``purge``, ``enqueue``,
``schedules``, ``check``: aiotaskq/_admin.py), which also take ``--queue NAME [--url URL]`` in
place of the application's module, for an operator without its code (docs/cli.md).

Exit codes, the same for every command:

- 0: done (a worker stopped gracefully);
- 1: it failed at run time: Redis could not be read (unreachable, or it refused us), or a
  worker's pool stopped on an error (an ``on_startup`` hook raised); or what was asked is not
  so now: no such job or schedule, a job already ended, no live pool (``check``). Trying again
  later may work. (A worker waits for an unreachable Redis, retrying.)
- 2: bad usage, fixed by changing the command line: an import path that does not resolve,
  an invalid option, a Redis URL that does not parse.

Every error is one line on stderr, ``aiotaskq: error: ...`` (a worker's run-time errors are
logged, with the traceback of the user code that raised). Redis passwords never appear in
what it prints or logs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
from redis.exceptions import RedisError

from . import __version__, _admin
from ._admin import UsageError
from ._completion import add_examples, script
from ._display import age, iso, when
from ._supervisor import Supervisor, watch_supervisor
from ._url import redact_text
from .job import JobStatus
from .pool import Pool
from .queue import Queue

log = logging.getLogger("aiotaskq")
T = TypeVar("T")

_LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "completion":
        print(script(parser, args.shell), end="")
        return 0
    try:
        queues = _queues(args)
        _check_urls(queues)
        if args.command == "worker" and args.reload_dirs and not args.reload:
            raise UsageError("--reload-dir: only with --reload")
        if args.command == "worker" and (args.processes != 1 or args.reload):
            return _supervise(args, queues, argv)
        if args.command == "worker":
            return _worker(args, queues)
        if args.command == "info":
            return _info(args, queues, sys.stdout)
        if args.command == "dashboard":
            return _dashboard(args, queues)
        if args.command == "schedules" and not args.remove:
            return _schedules(args, queues, sys.stdout)
        return _admin_command(args, queues, sys.stdout)
    except UsageError as exc:
        print(f"aiotaskq: error: {_redact(str(exc), args.url)}", file=sys.stderr)
        return 2


# -- arguments -----------------------------------------------------------------------------------


def _pool_defaults() -> dict[str, Any]:
    params = inspect.signature(Pool.__init__).parameters
    return {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiotaskq", description="aiotaskq: an asyncio job queue on Redis.")
    parser.add_argument("--version", action="version", version=f"aiotaskq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = _pool_defaults()

    worker = sub.add_parser("worker", help="run a pool that serves the queue(s)")
    _target_args(worker)
    worker.add_argument("--concurrency", type=int, default=d["concurrency"], metavar="N",
                        help="jobs run at once (%(default)s)")  # fmt: skip
    worker.add_argument("--batch-size", type=int, default=d["batch_size"], metavar="N",
                        help="jobs claimed per round trip (default: --concurrency)")  # fmt: skip
    for flag, name, what in (
        ("--poll-interval", "poll_interval", "longest idle wait between claims"),
        ("--heartbeat-interval", "heartbeat_interval", "seconds between heartbeats"),
        ("--stale-timeout", "stale_timeout", "a pool silent this long is declared dead"),
        ("--shutdown-timeout", "shutdown_timeout", "on SIGTERM, wait this long for running jobs"),
    ):
        worker.add_argument(flag, type=float, default=d[name], metavar="S", help=f"{what} (%(default)ss)")
    worker.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                        help="event loop: uvloop when installed (auto, the default), or the one named")  # fmt: skip
    worker.add_argument("--metrics-port", type=int, metavar="P",
                        help="serve Prometheus metrics on this port at /metrics (needs aiotaskq[metrics])")  # fmt: skip
    worker.add_argument("--processes", type=int, default=1, metavar="N",
                        help="run N worker processes under one supervisor that restarts a crashed one and "
                             "forwards SIGTERM/SIGINT (%(default)s)")  # fmt: skip
    worker.add_argument("--reload", action="store_true",
                        help="development: restart the worker(s) gracefully when a .py file under the current "
                             "directory (or each --reload-dir) changes (needs aiotaskq[reload])")  # fmt: skip
    worker.add_argument("--reload-dir", action="append", default=[], metavar="DIR", dest="reload_dirs",
                        help="with --reload: watch DIR instead of the current directory (repeatable)")  # fmt: skip
    worker.add_argument("--no-crash-detection", dest="crash_detection", action="store_false",
                        help="judge pools by heartbeat age alone (behind a proxy that resets connections)")  # fmt: skip
    worker.add_argument(
        "--log-level", default="INFO", type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="(%(default)s)",
    )  # fmt: skip

    info = sub.add_parser("info", help="print job counts and live pools")
    _target_args(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    schedules = sub.add_parser("schedules", help="list recurring schedules with their next run, or remove one")
    _target_args(schedules)
    schedules.add_argument("--remove", metavar="KEY", help="remove the schedule with this key")
    schedules.add_argument("--json", action="store_true", help="print JSON instead of text")
    _admin_parsers(sub)

    dash = sub.add_parser("dashboard", help="serve the web dashboard (needs aiotaskq[web])")
    _target_args(dash)
    dash.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    dash.add_argument("--port", type=int, default=8000, help="(%(default)s)")
    dash.add_argument("--read-only", action="store_true", help="show, never act")

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
    add_examples(sub)
    return parser


def _admin_parsers(sub: Any) -> None:
    statuses = [s.value for s in JobStatus]
    job = sub.add_parser("job", help="show every field of one job")
    _target_args(job)
    job.add_argument("id", metavar="ID")
    job.add_argument("--json", action="store_true", help="print JSON instead of text")

    jobs = sub.add_parser("jobs", help="list the jobs in a status (a page of them)")
    _target_args(jobs)
    jobs.add_argument("--status", required=True, choices=statuses)
    jobs.add_argument("--task", metavar="NAME", help="only this task's jobs")
    jobs.add_argument("--limit", type=int, default=20, metavar="N", help="jobs per page (%(default)s)")
    jobs.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N (%(default)s)")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of text")

    cancel = sub.add_parser("cancel", help="cancel jobs (a running one is stopped by its pool)")
    _target_args(cancel)
    cancel.add_argument("ids", nargs="+", metavar="ID")

    requeue = sub.add_parser("requeue", help="put failed jobs back in the queue, with fresh retries")
    _target_args(requeue)
    requeue.add_argument("ids", nargs="*", metavar="ID")
    requeue.add_argument("--all-failed", action="store_true", help="every failed job of the queue")

    purge = sub.add_parser("purge", help="delete every job in a status, with its data")
    _target_args(purge)
    purge.add_argument("--status", required=True, choices=[s for s in statuses if s != "active"])
    purge.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")

    enqueue = sub.add_parser("enqueue", help="enqueue a job of a task, by name")
    _target_args(enqueue)
    enqueue.add_argument("task", metavar="TASK")
    enqueue.add_argument("--args", metavar="JSON", help="positional arguments, a JSON array")
    enqueue.add_argument("--kwargs", metavar="JSON", help="keyword arguments, a JSON object")
    enqueue.add_argument("--delay", type=float, metavar="S", help="run it in S seconds")
    enqueue.add_argument("--priority", type=int, metavar="P", help="higher runs first")
    enqueue.add_argument("--job-id", metavar="ID", help="its id (deduplicated while pending)")
    enqueue.add_argument("--retries", type=int, metavar="N", help="retries after a failure")
    enqueue.add_argument("--timeout", type=float, metavar="S", help="seconds an attempt may run")
    enqueue.add_argument("--any-task", action="store_true", help="a task the module does not declare")
    enqueue.add_argument("--json", action="store_true", help="print JSON instead of text")

    for name, what in (("pause", "stop handing out jobs (running ones finish; enqueues go on)"),
                       ("resume", "hand out jobs again")):  # fmt: skip
        _target_args(sub.add_parser(name, help=what))

    check = sub.add_parser("check", help="exit 0 when a live pool serves the queue(s), 1 when none does")
    _target_args(check)
    check.add_argument("--this-host", action="store_true", help="only pools on this host")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="MODULE:ATTR",
                        help="a Queue, or a list of Queues, e.g. app.tasks:queue")  # fmt: skip
    parser.add_argument("--queue", metavar="NAME",
                        help="the queue of this name (of MODULE:ATTR's list, or without the code)")  # fmt: skip
    parser.add_argument("--shards", type=int, metavar="N", help="with --queue alone: its shards=N (1)")
    parser.add_argument("--url", help="Redis URL overriding the queues' own")


_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # MODULE:ATTR; a job id is anything else


def _queues(args: argparse.Namespace) -> list[Queue]:
    """The queues the command is about: MODULE:ATTR's, the one ``--queue`` names among them,
    or (with ``--queue`` alone) a queue of that name built here, on ``--url`` or
    ``$AIOTASKQ_REDIS_URL``."""
    if args.queue is not None and args.target is not None and not _TARGET.match(args.target) and "ids" in args:
        args.ids, args.target = [args.target, *args.ids], None  # `cancel --queue q ID ID`: argparse took ID for it
    if args.target is None:
        return [_named_queue(args)]
    if args.shards is not None:
        raise UsageError("--shards: only with --queue alone (MODULE:ATTR's queue says its shards)")
    queues = load_queues(args.target)
    if args.queue is not None:
        queues = [q for q in queues if q.name == args.queue]
        if not queues:
            raise UsageError(f"{args.target!r} has no queue named {args.queue!r}")
    if args.url:
        for q in queues:
            q.use_url(args.url)
    return queues


def _named_queue(args: argparse.Namespace) -> Queue:
    """``--queue NAME [--shards N] [--url URL]``: the queue, without the application's code."""
    if args.queue is None:
        raise UsageError("give MODULE:ATTR (e.g. app.tasks:queue), or --queue NAME")
    if args.command == "worker":
        raise UsageError("the worker runs the tasks' code: give MODULE:ATTR")
    try:
        return Queue(args.queue, url=args.url, shards=1 if args.shards is None else args.shards)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


_ONE_QUEUE = {"job": _admin.job, "jobs": _admin.jobs, "cancel": _admin.cancel, "requeue": _admin.requeue,
              "purge": _admin.purge, "enqueue": _admin.enqueue, "schedules": _admin.remove_schedule,
              "pause": _admin.pause, "resume": _admin.pause}  # fmt: skip


def _admin_command(args: argparse.Namespace, queues: list[Queue], out: TextIO) -> int:
    """Run an operator's command (aiotaskq/_admin.py), closing the queues after; exit 1 with
    one line when Redis fails."""
    if args.command != "check" and len(queues) > 1:
        names = ", ".join(q.name for q in queues)
        raise UsageError(f"{args.target!r} names several queues ({names}): pick one with --queue NAME")

    async def run() -> int:
        if args.command == "check":
            return await _admin.check(args, queues, out)
        return await _ONE_QUEUE[args.command](args, queues[0], out)

    code = _on_redis(args, queues, run)
    return 1 if code is None else code


def _on_redis(args: argparse.Namespace, queues: list[Queue], fn: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``fn`` and close the queues after; None, with one line on stderr, when Redis fails."""

    async def run() -> T:
        try:
            return await fn()
        finally:
            with anyio.CancelScope(shield=True):
                for q in queues:
                    await q.close()

    try:
        return anyio.run(run)
    except (RedisError, OSError) as exc:
        where = ", ".join(sorted({q.url for q in queues}))
        print(f"aiotaskq: error: could not read from Redis at {where}: {_redact(_describe(exc), args.url, queues)}",
              file=sys.stderr)  # fmt: skip
        return None


def load_queues(target: str) -> list[Queue]:
    """Import ``module.path:attr`` and return the Queue(s) it names (UsageError if it cannot)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{target!r}: expected MODULE:ATTR, e.g. app.tasks:queue")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script, like `python -m`, finds modules in the cwd
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"module {module_name!r} not found (is its directory on PYTHONPATH?)") from None
        raise UsageError(f"importing module {module_name!r} failed: {_describe(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any error raised by the user's module at import time
        raise UsageError(f"importing module {module_name!r} failed: {_describe(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Queue):
        return [obj]
    if isinstance(obj, list | tuple) and obj and all(isinstance(q, Queue) for q in obj):
        return list(obj)
    raise UsageError(f"{target!r} is of type {type(obj).__name__}, not a Queue or a list of Queues")


def _check_urls(queues: Sequence[Queue]) -> None:
    """Parse each queue's Redis URL now (creating its client, which connects only when
    used): a URL that does not parse is a usage error, whatever the command."""
    for q in queues:
        try:
            q.redis  # noqa: B018 - the property parses the URL
        except ValueError as exc:
            raise UsageError(f"invalid Redis URL {q.url} (queue {q.name!r}): {exc}") from None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


# -- logging -------------------------------------------------------------------------------------


def _secrets(queues: Sequence[Queue], url: str | None) -> list[str]:
    out: list[str] = []
    for raw in [url, *(q._url for q in queues if q._own_redis)]:
        if raw:
            try:
                password = urlsplit(raw).password
            except ValueError:
                continue
            if password:
                out += {password, unquote(password)}  # as written in the URL, and as sent to Redis
    return sorted(set(out), key=len, reverse=True)


def _redact(text: str, url: str | None, queues: Sequence[Queue] = ()) -> str:
    for secret in _secrets(queues, url):
        text = redact_text(text, secret)
    return text


class _RedactingFormatter(logging.Formatter):
    """Belt and braces: even a message that quotes a URL or an exception cannot show a password."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(_LOG_FORMAT, _DATE_FORMAT)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = redact_text(text, secret)
        return text


def _configure_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- worker --------------------------------------------------------------------------------------


def _worker(args: argparse.Namespace, queues: list[Queue]) -> int:
    try:
        pool = Pool(
            queues,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            poll_interval=args.poll_interval,
            heartbeat_interval=args.heartbeat_interval,
            stale_timeout=args.stale_timeout,
            shutdown_timeout=args.shutdown_timeout,
            crash_detection=args.crash_detection,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    uvloop = _uvloop(args.loop)
    metrics = _metrics_module() if args.metrics_port is not None else None
    _configure_logging(args.log_level, _secrets(queues, args.url))
    log.info(
        "aiotaskq worker (pid %d): queues %s; concurrency %d; event loop %s",
        os.getpid(), ", ".join(f"{q.name!r} at {q.url}" for q in queues), pool.concurrency,
        f"uvloop {uvloop.__version__}" if uvloop else "asyncio",
    )  # fmt: skip
    try:
        anyio.run(_serve, pool, metrics, args.metrics_port, backend_options={"use_uvloop": uvloop is not None})
    except KeyboardInterrupt:  # a signal before the pool installed its handlers
        log.warning("interrupted before the pool was running")
        return 130
    except Exception as exc:  # the pool stopped on an error (a startup hook: user code)
        log.error("the worker stopped on an error: %s", _describe(exc), exc_info=exc)
        return 1
    _wait_for_task_threads()
    return 0


def _supervise(args: argparse.Namespace, queues: list[Queue], argv: list[str]) -> int:
    """``--processes N`` / ``--reload``: this process supervises worker children (_supervisor.py)."""
    if args.processes < 1:
        raise UsageError(f"--processes: must be 1 or more, got {args.processes}")
    if args.reload:
        try:
            importlib.import_module("watchfiles")
        except ImportError:
            raise UsageError("--reload needs the watchfiles package: pip install 'aiotaskq[reload]'") from None
    _configure_logging(args.log_level, _secrets(queues, args.url))
    dirs = [Path(d).resolve() for d in args.reload_dirs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise UsageError(f"--reload-dir: not a directory: {', '.join(missing)}")
    return Supervisor(argv, args.processes, args.reload, dirs or [Path.cwd()]).run()


def _uvloop(choice: str) -> ModuleType | None:
    """The uvloop module when ``--loop`` asks for it, or by default (auto) when it is installed;
    None for asyncio's own loop. UsageError when uvloop is asked for and cannot be imported."""
    if choice == "asyncio":
        return None
    try:
        return importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "uvloop":
            hint = "pip install 'aiotaskq[uvloop]'"
            raise UsageError(f"--loop uvloop: uvloop cannot be imported ({exc}); {hint}") from None
        return None


def _wait_for_task_threads() -> None:
    """Say so when the process cannot exit yet: plain-function tasks that outlived the
    shutdown timeout still run in their threads, and Python waits for them."""
    left = [t for t in threading.enumerate() if t.name.startswith("AnyIO worker thread")]
    deadline = time.monotonic() + 0.5
    for t in left:  # idle worker threads end as the event loop closes
        t.join(max(0.0, deadline - time.monotonic()))
    left = [t for t in left if t.is_alive()]
    if left:
        log.warning("waiting for %d thread(s) still running plain-function tasks (they ignore cancellation); "
                    "the process exits when they return", len(left))  # fmt: skip


def _metrics_module() -> ModuleType:
    try:
        return importlib.import_module("aiotaskq.metrics")
    except ImportError as exc:
        raise UsageError(f"--metrics-port: {exc}") from None


async def _serve(pool: Pool, metrics: ModuleType | None = None, port: int | None = None) -> None:
    server = None
    if metrics is not None:
        server = metrics.serve(port, pool)
        log.info("Prometheus metrics at http://%s:%d/metrics", "0.0.0.0", server.port)  # noqa: S104 - as served
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_supervisor, pool.stop)
            await pool.run()
            tg.cancel_scope.cancel()
    finally:
        if server is not None:
            server.close()
        with anyio.CancelScope(shield=True):
            for q in pool.queues:
                await q.close()


# -- dashboard -----------------------------------------------------------------------------------


def _dashboard(args: argparse.Namespace, queues: list[Queue]) -> int:
    try:
        web = importlib.import_module("aiotaskq.web")
        uvicorn = importlib.import_module("uvicorn")
    except ImportError as exc:
        raise UsageError(f"dashboard: {exc}; pip install 'aiotaskq[web]'") from None
    app = web.create_app(queues, read_only=args.read_only, metrics=_has_prometheus())
    _configure_logging("INFO", _secrets(queues, args.url))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    log.info("aiotaskq dashboard on http://%s:%d/ for %s%s", args.host, args.port,
             ", ".join(f"{q.name!r} at {q.url}" for q in queues), " (read-only)" if args.read_only else "")  # fmt: skip

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            with anyio.CancelScope(shield=True):
                for q in queues:
                    await q.close()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        return 130
    return 0 if server.started else 1


def _has_prometheus() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


# -- info ----------------------------------------------------------------------------------------


def _read(
    args: argparse.Namespace, queues: list[Queue], per_queue: Callable[[Queue], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]] | None:
    """``per_queue`` for each queue, closing them after; None (error printed) when Redis fails."""

    async def gather() -> list[dict[str, Any]]:
        return [await per_queue(q) for q in queues]

    return _on_redis(args, queues, gather)


def _info(args: argparse.Namespace, queues: list[Queue], out: TextIO) -> int:
    report = _read(args, queues, _gather_one)
    if report is None:
        return 1
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(_render(report), file=out)
    return 0


async def _gather_one(q: Queue) -> dict[str, Any]:
    counts = await q.counts()
    clock: tuple[int, int] = await q.redis.time()
    now_ms = clock[0] * 1000 + clock[1] // 1000
    beats: list[tuple[bytes, float]] = await q.redis.zrange(q.keys.pools, 0, -1, withscores=True)  # type: ignore[assignment]
    pools = []
    for raw_id, beat in beats:
        pool_id = raw_id.decode()
        raw_info: bytes | None = await q.redis.get(q.keys.pool_info(pool_id))  # type: ignore[assignment]
        try:
            details = json.loads(raw_info) if raw_info else {}
        except ValueError:
            details = {"unreadable": raw_info.decode("utf-8", "replace") if raw_info else ""}
        pools.append({
            "id": pool_id, "heartbeat_age": round(max(0.0, now_ms - beat) / 1000, 3),
            "heartbeat_at": iso(beat / 1000), "info": details,
        })  # fmt: skip
    return {
        "queue": q.name,
        "url": q.url,
        "shards": q.shards,
        "paused": await q.paused(),
        "now": iso(now_ms / 1000),
        "counts": {status.value: n for status, n in counts.items()},
        "pools": pools,
    }


def _render(report: list[dict[str, Any]]) -> str:
    lines = []
    for entry in report:
        now = datetime.fromisoformat(entry["now"]).timestamp()
        shards = f" in {entry['shards']} shards" if entry.get("shards", 1) > 1 else ""
        paused = " (paused)" if entry.get("paused") else ""
        lines.append(f"queue {entry['queue']!r}{shards} at {entry['url']}{paused}")
        for status, n in entry["counts"].items():
            lines.append(f"  {status:<10} {n:>8}")
        lines.append(f"  live pools: {len(entry['pools'])}")
        for p in entry["pools"]:
            info = dict(p["info"])
            started = info.pop("started", None)
            since = ""
            if isinstance(started, int | float):
                since = f"  started {when(started, now)}"
            details = " ".join(f"{k}={v}" for k, v in info.items())
            lines.append(f"    {p['id']}  heartbeat {age(p['heartbeat_age'])} ago{since}  {details}".rstrip())
    return "\n".join(lines)


# -- schedules -----------------------------------------------------------------------------------


def _schedules(args: argparse.Namespace, queues: list[Queue], out: TextIO) -> int:
    async def one(q: Queue) -> dict[str, Any]:
        return {"queue": q.name, "url": q.url, "schedules": msgspec.to_builtins(await q.schedules())}

    report = _read(args, queues, one)
    if report is None:
        return 1
    if args.json:
        print(json.dumps(report, indent=2), file=out)
        return 0
    now = time.time()
    for entry in report:
        print(f"queue {entry['queue']!r} at {entry['url']}: {len(entry['schedules'])} schedule(s)", file=out)
        for s in entry["schedules"]:
            nxt = when(datetime.fromisoformat(s["next_run"]).timestamp(), now) if s["next_run"] else "none (ended)"
            last = "never run"
            if s["last_run"]:
                last = f"last {when(datetime.fromisoformat(s['last_run']).timestamp(), now)} ({s['last_job_id']})"
            print(f"  {s['key']}  {s['task']}  {s['spec']}  next {nxt}  {last}", file=out)
    return 0
