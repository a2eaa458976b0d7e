"""The command line: ``aiotaskq worker app.tasks:queue`` and ``aiotaskq info app.tasks:queue``.

Exit codes, the same for every command:

- 0: done (a worker stopped gracefully);
- 1: it failed at run time: Redis could not be read (``info``, ``schedules``: unreachable,
  or it refused us), or a worker's pool stopped on an error (an ``on_startup`` hook raised);
  trying again later may work. (A worker waits for an unreachable Redis, retrying.)
- 2: bad usage, fixed by changing the command line: an import path that does not resolve,
  an invalid option, a Redis URL that does not parse.

Every error is one line on stderr, ``aiotaskq: error: ...`` (a worker's run-time errors are
logged, with the traceback of the user code that raised). Redis passwords never appear in
what it prints or logs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import anyio
import msgspec
from redis.exceptions import RedisError

from ._url import redact_text
from .pool import Pool
from .queue import Queue

log = logging.getLogger("aiotaskq")

_LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        queues = load_queues(args.target)
        if args.url:
            for q in queues:
                q.use_url(args.url)
        _check_urls(queues)
        if args.command == "worker":
            return _worker(args, queues)
        if args.command == "schedules":
            return _schedules(args, queues, sys.stdout)
        return _info(args, queues, sys.stdout)
    except UsageError as exc:
        print(f"aiotaskq: error: {_redact(str(exc), args.url)}", file=sys.stderr)
        return 2


# -- arguments -----------------------------------------------------------------------------------


def _pool_defaults() -> dict[str, Any]:
    params = inspect.signature(Pool.__init__).parameters
    return {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiotaskq", description="aiotaskq: an asyncio job queue on Redis.")
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
    worker.add_argument("--no-crash-detection", dest="crash_detection", action="store_false",
                        help="judge pools by heartbeat age alone (behind a proxy that resets connections)")  # fmt: skip
    worker.add_argument(
        "--log-level", default="INFO", type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="(%(default)s)",
    )  # fmt: skip

    info = sub.add_parser("info", help="print job counts and live pools")
    _target_args(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    schedules = sub.add_parser("schedules", help="list recurring schedules with their next run")
    _target_args(schedules)
    schedules.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="MODULE:ATTR", help="a Queue, or a list of Queues, e.g. app.tasks:queue")
    parser.add_argument("--url", help="Redis URL overriding the queues' own")


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
    _configure_logging(args.log_level, _secrets(queues, args.url))
    log.info(
        "aiotaskq worker (pid %d): queues %s; concurrency %d; event loop %s",
        os.getpid(), ", ".join(f"{q.name!r} at {q.url}" for q in queues), pool.concurrency,
        f"uvloop {uvloop.__version__}" if uvloop else "asyncio",
    )  # fmt: skip
    try:
        anyio.run(_serve, pool, backend_options={"use_uvloop": uvloop is not None})
    except KeyboardInterrupt:  # a signal before the pool installed its handlers
        log.warning("interrupted before the pool was running")
        return 130
    except Exception as exc:  # the pool stopped on an error (a startup hook: user code)
        log.error("the worker stopped on an error: %s", _describe(exc), exc_info=exc)
        return 1
    _wait_for_task_threads()
    return 0


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


async def _serve(pool: Pool) -> None:
    try:
        await pool.run()
    finally:
        with anyio.CancelScope(shield=True):
            for q in pool.queues:
                await q.close()


# -- info ----------------------------------------------------------------------------------------


def _read(
    args: argparse.Namespace, queues: list[Queue], per_queue: Callable[[Queue], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]] | None:
    """``per_queue`` for each queue, closing them after; None (error printed) when Redis fails."""

    async def gather() -> list[dict[str, Any]]:
        try:
            return [await per_queue(q) for q in queues]
        finally:
            with anyio.CancelScope(shield=True):
                for q in queues:
                    await q.close()

    try:
        return anyio.run(gather)
    except (RedisError, OSError) as exc:
        where = ", ".join(sorted({q.url for q in queues}))
        print(f"aiotaskq: error: could not read from Redis at {where}: {_redact(_describe(exc), args.url, queues)}",
              file=sys.stderr)  # fmt: skip
        return None


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
            "heartbeat_at": _iso(beat / 1000), "info": details,
        })  # fmt: skip
    return {
        "queue": q.name,
        "url": q.url,
        "now": _iso(now_ms / 1000),
        "counts": {status.value: n for status, n in counts.items()},
        "pools": pools,
    }


def _render(report: list[dict[str, Any]]) -> str:
    lines = []
    for entry in report:
        now = datetime.fromisoformat(entry["now"]).timestamp()
        lines.append(f"queue {entry['queue']!r} at {entry['url']}")
        for status, n in entry["counts"].items():
            lines.append(f"  {status:<10} {n:>8}")
        lines.append(f"  live pools: {len(entry['pools'])}")
        for p in entry["pools"]:
            info = dict(p["info"])
            started = info.pop("started", None)
            when = ""
            if isinstance(started, int | float):
                when = f"  started {_when(started, now)}"
            details = " ".join(f"{k}={v}" for k, v in info.items())
            lines.append(f"    {p['id']}  heartbeat {_age(p['heartbeat_age'])} ago{when}  {details}".rstrip())
    return "\n".join(lines)


# -- times, as people read them --------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    """A duration for people: ``2.5s``, ``42s``, ``3m 5s``, ``2h 10m``, ``4d 3h``."""
    s = abs(seconds)
    if s < 10:
        return f"{s:.1f}s"
    n = round(s)
    if n < 60:
        return f"{n}s"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if n >= size:
            rest = (n % size) // sub_size
            return f"{n // size}{unit} {rest}{sub}" if rest else f"{n // size}{unit}"
    return f"{n}s"  # not reached


def _when(epoch: float, now: float) -> str:
    """``2026-12-01 22:10:03 UTC (3m ago)``, or ``(in 5m)`` for a time to come."""
    delta = now - epoch
    return f"{_date(epoch)} ({_age(delta)} ago)" if delta >= 0 else f"{_date(epoch)} (in {_age(delta)})"


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
            nxt = _when(datetime.fromisoformat(s["next_run"]).timestamp(), now) if s["next_run"] else "none (ended)"
            last = "never run"
            if s["last_run"]:
                last = f"last {_when(datetime.fromisoformat(s['last_run']).timestamp(), now)} ({s['last_job_id']})"
            print(f"  {s['key']}  {s['task']}  {s['spec']}  next {nxt}  {last}", file=out)
    return 0
