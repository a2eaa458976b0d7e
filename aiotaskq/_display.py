"""What the command line prints for people: times, ages, tables, a progress line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from .job import JobInfo, JobStatus


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float) -> str:
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


def when(epoch: float, now: float) -> str:
    """``2026-12-01 22:10:03 UTC (3m ago)``, or ``(in 5m)`` for a time to come."""
    delta = now - epoch
    return f"{date(epoch)} ({age(delta)} ago)" if delta >= 0 else f"{date(epoch)} (in {age(delta)})"


def ago(dt: datetime | None, now: float) -> str:
    """A stored time as ``3m ago`` / ``in 5m``, or ``-``."""
    if dt is None:
        return "-"
    delta = now - dt.timestamp()
    return f"{age(delta)} ago" if delta >= 0 else f"in {age(delta)}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int = 60) -> str:
    """Left-aligned columns, two spaces apart; a cell longer than ``width`` is cut with ``…``."""
    cut = [[c if len(c) <= width else c[: width - 1] + "…" for c in row] for row in rows]
    sizes = [max([len(h), *(len(r[i]) for r in cut)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(n) for h, n in zip(headers, sizes, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(n) for c, n in zip(r, sizes, strict=True)).rstrip() for r in cut]
    return "\n".join(lines)


class Progress:
    """``requeued 4,000 of 10,000 (40%)`` on one line of a terminal, redrawn at most ten times
    a second; nothing when the stream is not a terminal (a script reads the final line)."""

    def __init__(self, verb: str, total: int, out: TextIO | None = None, *, force: bool = False) -> None:
        self.verb, self.total = verb, total
        self.out = out or sys.stderr
        self.on = force or self.out.isatty()
        self.done = 0
        self._drawn = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and now - self._drawn >= 0.1:
            self._drawn = now
            pct = f" ({min(100, round(100 * self.done / self.total))}%)" if self.total else ""
            self.out.write(f"\r{self.verb} {self.done:,} of {self.total:,}{pct}")
            self.out.flush()

    def close(self) -> None:
        if self.on and self._drawn:
            self.out.write("\r\033[K")  # clear the line: the command prints its result next
            self.out.flush()


def short_json(value: Any, width: int = 200) -> str:
    """A value (arguments, a result) as one line of JSON, cut at ``width`` characters."""
    text = json.dumps(msgspec.to_builtins(value), default=repr, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def job_rows(info: JobInfo, now: float) -> list[tuple[str, str]]:
    """Every field of a ``JobInfo`` as (name, text), times as dates with their age (the CLI's
    ``job`` and the dashboard's job page)."""
    rows = [
        ("task", info.task), ("status", info.status.value), ("priority", str(info.priority)),
        ("attempts", f"{info.attempts} (retries allowed: {info.max_retries})"),
        ("args", short_json(list(info.args))), ("kwargs", short_json(info.kwargs)),
    ]  # fmt: skip
    for name, dt in (("enqueued", info.enqueued_at), ("scheduled", info.scheduled_at),
                     ("started", info.started_at), ("finished", info.finished_at)):  # fmt: skip
        if dt is not None:
            rows.append((name, when(dt.timestamp(), now)))
    if info.duration is not None:
        rows.append(("duration", f"{info.duration:.3f}s"))
    if info.pool_id:
        rows.append(("pool", info.pool_id))
    if info.key is not None:
        rows.append(("key", info.key))
    if info.after:
        rows.append(("after", ", ".join(info.after)))
    if info.progress is not None:
        rows.append(("progress", f"{info.progress:.0%}" + (f" ({info.progress_note})" if info.progress_note else "")))
    if info.status is JobStatus.SUCCEEDED:
        rows.append(("result", short_json(info.result, 2000)))
    if info.error:
        rows.append(("error", info.error))
    return rows
