"""The operator's commands: ``job``, ``jobs``, ``cancel``, ``requeue``, ``purge``, ``enqueue``,
``schedules --remove`` and ``check`` (aiotaskq/cli.py parses them and reports errors).

Each takes the parsed arguments, the queue(s) and where to print, and returns the exit code:
0 done, 1 not done for a reason of the moment (no such job, no live pool), and UsageError
(exit 2) for input that cannot be right.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any, TextIO

import msgspec

from . import _browse, _display
from .job import JobInfo, JobStatus
from .queue import Queue
from .schedule import check_arguments


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit code 2."""


def _json(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, default=repr)


# -- job, jobs -----------------------------------------------------------------------------------


async def job(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    [info] = await _browse.infos(q, [args.id])
    if info is None:
        print(f"aiotaskq: no job {args.id!r} on queue {q.name!r}", file=sys.stderr)
        return 1
    print(_json(info) if args.json else render_job(info, q, time.time()), file=out)
    return 0


def render_job(info: JobInfo, q: Queue, now: float) -> str:
    """Every field of a ``JobInfo``, one per line, times with their age; then the traceback."""
    lines = [f"job {info.id} on queue {q.name!r}"] + [f"  {k:<10} {v}" for k, v in _display.job_rows(info, now)]
    if info.traceback:
        lines += ["  traceback:"] + [f"    {line}" for line in info.traceback.rstrip().splitlines()]
    return "\n".join(lines)


_COLUMNS: dict[JobStatus, tuple[str, str]] = {
    JobStatus.SCHEDULED: ("due", "scheduled_at"),
    JobStatus.QUEUED: ("enqueued", "enqueued_at"),
    JobStatus.ACTIVE: ("started", "started_at"),
}


async def jobs(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    status = JobStatus(args.status)
    if args.limit <= 0 or args.offset < 0:
        raise UsageError("--limit must be > 0 and --offset >= 0")
    page = await _browse.find(q, status, task=args.task, limit=args.limit, offset=args.offset)
    if args.json:
        print(_json({"jobs": page.jobs, "next_offset": page.next, "scanned": page.scanned}), file=out)
        return 0
    now = time.time()
    label, attr = _COLUMNS.get(status, ("finished", "finished_at"))
    headers = ["id", "task", label, "attempts"]
    extra = {JobStatus.FAILED: "error", JobStatus.ACTIVE: "pool", JobStatus.SUCCEEDED: "duration"}.get(status)
    if extra:
        headers.append(extra)
    rows = []
    for info in page.jobs:
        row = [info.id, info.task, _display.ago(getattr(info, attr), now), str(info.attempts)]
        if extra == "error":
            row.append((info.error or "").splitlines()[0] if info.error else "")
        elif extra == "pool":
            row.append(info.pool_id or "")
        elif extra == "duration":
            row.append(f"{info.duration:.3f}s" if info.duration is not None else "")
        rows.append(row)
    what = f" of task {args.task!r}" if args.task else ""
    print(_display.table(headers, rows) if rows else f"no {status.value} jobs{what} on queue {q.name!r}", file=out)
    if page.next is not None:
        hint = f" (looked at {page.scanned:,} ids)" if args.task else ""
        print(f"... more: --offset {page.next}{hint}", file=out)
    return 0


# -- cancel, requeue, purge ----------------------------------------------------------------------


async def cancel(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    missed = 0
    for job_id in args.ids:
        if await q.job(job_id).cancel():
            print(f"job {job_id}: cancelled (a running job stops in its pool)", file=out)
        else:
            missed += 1
            print(f"job {job_id}: not cancelled: no such job, or it has ended", file=out)
    return 1 if missed else 0


async def requeue(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    if bool(args.ids) == bool(args.all_failed):
        raise UsageError("requeue: give job ids, or --all-failed")
    total = len(args.ids) if args.ids else (await q.counts())[JobStatus.FAILED]
    progress = _display.Progress("requeued", total)
    try:
        n = await q.requeue_failed(args.ids or None, on_batch=progress.add)
    finally:
        progress.close()
    if args.ids:
        print(f"requeued {n} of {len(args.ids)} job(s)" + ("" if n == len(args.ids) else
              " (the others are not failed, do not exist, or wait on a parent that is still failed)"),
              file=out)  # fmt: skip
        return 0 if n == len(args.ids) else 1
    print(f"requeued {n:,} failed job(s) on queue {q.name!r}", file=out)
    return 0


async def purge(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    status = JobStatus(args.status)
    if status is JobStatus.ACTIVE:
        raise UsageError("purge: active jobs cannot be purged; cancel them instead")
    total = (await q.counts())[status]
    if not total:
        print(f"no {status.value} jobs on queue {q.name!r}", file=out)
        return 0
    if not args.yes and not _confirm(f"delete {total:,} {status.value} job(s) of queue {q.name!r}, with their data?"):
        return 1
    progress = _display.Progress("purged", total)
    try:
        n = await q.purge(status, on_batch=progress.add)
    finally:
        progress.close()
    print(f"purged {n:,} {status.value} job(s) on queue {q.name!r}", file=out)
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"purge would {question[:-1]}: add --yes to do it without a terminal to ask")
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


# -- enqueue -------------------------------------------------------------------------------------


def _json_arg(flag: str, text: str | None, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: not JSON ({exc})") from None
    if not isinstance(value, kind):
        raise UsageError(f"{flag}: expected a JSON {'array' if kind is list else 'object'}, got {text!r}")
    return value


async def enqueue(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    call_args = _json_arg("--args", args.args, list)
    kwargs = _json_arg("--kwargs", args.kwargs, dict)
    task = q.tasks.get(args.task)
    if task is None and q.tasks and not args.any_task:
        known = ", ".join(sorted(q.tasks))
        raise UsageError(f"no task {args.task!r} on queue {q.name!r} (it has: {known}); --any-task enqueues it anyway")
    try:
        if task is not None:
            check_arguments(task, tuple(call_args), kwargs)
        job = await q.enqueue(args.task, call_args, kwargs, delay=args.delay, priority=args.priority,
                              job_id=args.job_id, retries=args.retries, timeout=args.timeout)  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    job_id = job.id if job is not None else args.job_id
    if args.json:
        print(json.dumps({"id": job_id, "enqueued": job is not None}), file=out)
    elif job is None:
        print(f"job {job_id} is already pending on queue {q.name!r}: nothing enqueued", file=out)
    else:
        print(f"enqueued job {job_id} ({args.task}) on queue {q.name!r}", file=out)
    return 0


# -- pause, resume ------------------------------------------------------------------------------


async def pause(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    if args.command == "pause":
        done = await q.pause()
        print(f"paused queue {q.name!r}: pools take nothing more" if done else f"queue {q.name!r} is already paused",
              file=out)  # fmt: skip
    else:
        done = await q.resume()
        print(f"resumed queue {q.name!r}" if done else f"queue {q.name!r} was not paused", file=out)
    return 0


# -- check ---------------------------------------------------------------------------------------


async def live_pools(q: Queue, *, this_host: bool = False) -> list[dict[str, Any]]:
    """The pools serving ``q`` whose heartbeat is fresh (younger than their stale timeout; the
    record of a pool gone silent expires with its heartbeat); with ``this_host``, only this host's."""
    first = q.parts[0]  # every pool registers on every shard
    sec, usec = await first.redis.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    beats: list[tuple[bytes, float]] = await first.redis.zrange(first.keys.pools, 0, -1, withscores=True)  # type: ignore[assignment]
    host = socket.gethostname()
    out = []
    for raw_id, beat in beats:
        raw = await first.redis.get(first.keys.pool_info(raw_id.decode()))
        try:
            info = json.loads(raw) if raw else None
        except ValueError:
            info = None
        if not isinstance(info, dict):
            continue
        age = max(0.0, now_ms - beat) / 1000
        if age >= float(info.get("stale_timeout", 30.0)) or (this_host and info.get("host") != host):
            continue
        out.append({"id": raw_id.decode(), "heartbeat_age": round(age, 3), **info})
    return out


async def check(args: argparse.Namespace, queues: list[Queue], out: TextIO) -> int:
    report = []
    for q in queues:
        pools = await live_pools(q, this_host=args.this_host)
        report.append({"queue": q.name, "live_pools": len(pools), "pools": pools})
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    where = " on this host" if args.this_host else ""
    for entry in report if not args.json else []:
        n = entry["live_pools"]
        print(f"ok: {n} live pool(s){where} serve queue {entry['queue']!r}" if n else
              f"not ok: no live pool{where} serves queue {entry['queue']!r}", file=out)  # fmt: skip
    return 0 if all(e["live_pools"] for e in report) else 1


# -- schedules -----------------------------------------------------------------------------------


async def remove_schedule(args: argparse.Namespace, q: Queue, out: TextIO) -> int:
    if await q.unschedule(args.remove):
        print(f"removed schedule {args.remove!r} of queue {q.name!r}", file=out)
        return 0
    print(f"no schedule {args.remove!r} on queue {q.name!r}", file=out)
    return 1
