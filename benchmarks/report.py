"""Medians, the markdown table, machine details, and the results blocks of ``docs/benchmarks.md``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .adapter import REFERENCES, system_class

OURS = "aiotaskq"  # the system the targets are for


def markers(loop: str) -> tuple[str, str]:
    """The comments around the results block of one event loop in the page."""
    return (
        f"<!-- results {loop}: begin (written by `python -m benchmarks`; edit the text around it, not inside) -->",
        f"<!-- results {loop}: end -->",
    )


@dataclass
class Run:
    """One repetition of one case (a workload with its sizes) on one system."""

    system: str
    case: str
    rep: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None  # why the run was not attempted


@dataclass(frozen=True)
class Metric:
    case: str
    key: str
    label: str
    fmt: str
    higher: bool = False  # higher is better
    target: str = ""
    limit: float | None = None  # an absolute bound on our median
    factor: float | None = None  # ours must be this many times better than the best peer's median
    compare: bool = True  # show how ours compares with the best peer

    def met(self, ours: float, best_peer: float | None) -> str:
        checks: list[bool] = []
        if self.limit is not None:
            checks.append(ours >= self.limit if self.higher else ours <= self.limit)
        if self.factor is not None:
            if best_peer is None:
                return "no peer" if not checks else ("yes" if all(checks) else "**no**") + ", no peer"
            checks.append(advantage(self, ours, best_peer) >= self.factor)
        if not checks:
            return ""
        return "yes" if all(checks) else "**no**"


def advantage(m: Metric, ours: float, peer: float) -> float:
    """How many times better ours is than ``peer`` (> 1: better), whichever way the metric points."""
    if m.higher:
        return ours / peer if peer else float("inf")
    return peer / ours if ours else float("inf")


# Targets of issue 4 ("Benchmarks against arq, SAQ, streaq and taskiq"), in the same run, medians.
METRICS: tuple[Metric, ...] = (
    Metric("latency", "latency_p50_ms", "W2 enqueue→start p50 (ms)", ".2f", target="≤ best peer", factor=1.0),
    Metric("latency", "latency_p95_ms", "W2 enqueue→start p95 (ms)", ".2f"),
    Metric(
        "latency",
        "latency_p99_ms",
        "W2 enqueue→start p99 (ms)",
        ".2f",
        target="< 2 and ≤ best peer",
        limit=2.0,
        factor=1.0,
    ),
    Metric("latency", "latency_max_ms", "W2 enqueue→start max (ms)", ".2f"),
    Metric("drain", "enqueue_rate", "W1 enqueue, 100 calls in flight (jobs/s)", ",.0f", higher=True),
    Metric("drain", "enqueue_batch_rate", "W1 enqueue, batch API (jobs/s)", ",.0f", higher=True),
    Metric(
        "drain",
        "enqueue_best_rate",
        "W1 enqueue, best of the two (jobs/s)",
        ",.0f",
        higher=True,
        target="≥ 3x best peer",
        factor=3.0,
    ),
    Metric(
        "drain",
        "drain_rate",
        "W1 drain, 1 worker process (jobs/s)",
        ",.0f",
        higher=True,
        target="≥ 5x best peer",
        factor=5.0,
    ),
    Metric("drain", "cpu_us_per_job", "W1 worker CPU per job (µs)", ".0f", target="< 80", limit=80.0),
    Metric("drain", "redis_cpu_us_per_job", "W1 Redis CPU per job (µs)", ".0f"),
    Metric("drain", "cmds_per_job", "W1 Redis commands per job, Lua's included", ".1f", target="≤ 2", limit=2.0),
    Metric("drain", "script_calls_per_job", "W1 script calls (EVALSHA/FCALL) per job", ".2f", compare=False),
    Metric("drain", "reads_per_job", "W1 Redis socket reads per job (≈ round trips)", ".2f"),
    Metric("io", "io_drain_s", "W3 10 ms sleeps: drain time (s)", ".3f"),
    Metric("io", "io_over_ideal_pct", "W3 10 ms sleeps: over the ideal (%)", ".0f", target="≤ 15", limit=15.0),
    Metric("retries", "retry_drain_s", "W5 fail once, then succeed: drain time (s)", ".2f"),
    Metric("scale_1k", "memory_bytes_per_job", "W4 memory per queued job, 1k waiting (bytes)", ".0f"),
    Metric(
        "scale_100k",
        "memory_bytes_per_job",
        "W4 memory per queued job, 100k waiting (bytes)",
        ".0f",
        target="< 300",
        limit=300.0,
    ),
    Metric(
        "scale_1m",
        "memory_bytes_per_job",
        "W4 memory per queued job, 1M waiting (bytes)",
        ".0f",
        target="< 300",
        limit=300.0,
    ),
    Metric("scale_1k", "fill_rate", "W4 enqueue 1k (jobs/s, batch API or 100 in flight)", ",.0f", higher=True),
    Metric("scale_100k", "fill_rate", "W4 enqueue 100k (jobs/s)", ",.0f", higher=True),
    Metric("scale_1m", "fill_rate", "W4 enqueue 1M (jobs/s)", ",.0f", higher=True),
    Metric("scale_1k", "drain_rate", "W4 drain, 1k waiting, 1 worker (jobs/s, all 1k)", ",.0f", higher=True),
    Metric("scale_100k", "drain_rate", "W4 drain, 100k waiting, 1 worker (jobs/s, first 20k)", ",.0f", higher=True),
    Metric("scale_1m", "drain_rate", "W4 drain, 1M waiting, 1 worker (jobs/s, first 20k)", ",.0f", higher=True),
    Metric("scale_4w", "drain_rate", "W4 drain, 100k waiting, 4 workers (jobs/s, first 20k)", ",.0f", higher=True),
    Metric("scale_100k", "cpu_us_per_job", "W4 100k waiting, 1 worker: worker CPU per job (µs)", ".0f"),
    Metric("scale_4w", "cpu_us_per_job", "W4 100k waiting, 4 workers: workers' CPU per job (µs)", ".0f"),
    Metric("scale_100k", "redis_cpu_us_per_job", "W4 100k waiting, 1 worker: Redis CPU per job (µs)", ".0f"),
    Metric("scale_4w", "redis_cpu_us_per_job", "W4 100k waiting, 4 workers: Redis CPU per job (µs)", ".0f"),
    # Targets of issue 10 ("Concurrent single enqueues are batched automatically").
    Metric("single_1", "single_rate", "W6 single enqueues, 1 in flight (jobs/s)", ",.0f", higher=True,
           target="no slower than before"),
    Metric("single_1", "single_call_us", "W6 single enqueues, 1 in flight: time per call (µs)", ".0f"),
    Metric("single_100", "single_rate", "W6 single enqueues, 100 in flight (jobs/s)", ",.0f", higher=True,
           target="≥ 5x best peer", factor=5.0),
    *(m for clients in (50, 200) for m in (
        Metric(f"http_{clients}", "http_rps", f"HTTP enqueue endpoint, {clients} clients (requests/s)", ",.0f",
               higher=True),
        Metric(f"http_{clients}", "http_p50_ms", f"HTTP {clients} clients: latency p50 (ms)", ".1f"),
        Metric(f"http_{clients}", "http_p99_ms", f"HTTP {clients} clients: latency p99 (ms)", ".1f"),
        Metric(f"http_{clients}", "http_failed", f"HTTP {clients} clients: requests not 2xx", ".0f",
               target="0", limit=0.0, compare=False),
    )),
)  # fmt: skip


@dataclass(frozen=True)
class Ratio:
    """A row computed from two medians of the same system: ``top / bottom``."""

    top: tuple[str, str]  # (case, metric)
    bottom: tuple[str, str]
    label: str
    target: str
    limit: float


RATIOS: tuple[Ratio, ...] = (
    Ratio(
        ("scale_1m", "drain_rate"), ("scale_1k", "drain_rate"), "W4 drain rate, 1M waiting ÷ 1k waiting", "≥ 0.8", 0.8
    ),
    Ratio(
        ("scale_100k", "drain_rate"), ("scale_1k", "drain_rate"), "W4 drain rate, 100k waiting ÷ 1k waiting", "", 0.0
    ),
    Ratio(("scale_1m", "drain_rate"), ("drain", "drain_rate"), "W4 drain rate, 1M waiting ÷ W1's 20k", "", 0.0),
    Ratio(
        ("scale_4w", "drain_rate"),
        ("scale_100k", "drain_rate"),
        "W4 drain rate, 4 workers ÷ 1 worker (100k)",
        "≥ 1.7",
        1.7,
    ),
)


@dataclass(frozen=True)
class Share:
    """A row computed from the medians of two systems: each system's ÷ the reference system's, in %."""

    case: str
    key: str
    reference: str
    label: str
    target: str
    limit: float  # ours must be at least this many %


SHARES: tuple[Share, ...] = tuple(
    Share(f"http_{c}", "http_rps", "baseline", f"HTTP {c} clients: requests/s, % of the endpoint without enqueue",
          "≥ 80%", 80.0)
    for c in (50, 200)
)  # fmt: skip


def values(runs: Iterable[Run]) -> dict[tuple[str, str, str], list[float]]:
    """(system, case, metric) -> the values of the successful repetitions."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for run in runs:
        if run.error is None and run.skipped is None:
            for key, value in run.metrics.items():
                out.setdefault((run.system, run.case, key), []).append(value)
    return out


def median_of(vals: dict[tuple[str, str, str], list[float]], system: str, case: str, key: str) -> float | None:
    vs = vals.get((system, case, key))
    return statistics.median(vs) if vs else None


def _cell(runs: list[Run], vals: dict[tuple[str, str, str], list[float]], system: str, m: Metric) -> str:
    vs = vals.get((system, m.case, m.key))
    if vs:
        low, high = f"{min(vs):{m.fmt}}", f"{max(vs):{m.fmt}}"
        spread = f" ({low} to {high})" if low != high else ""
        return f"{statistics.median(vs):{m.fmt}}{spread}"
    mine = [r for r in runs if r.system == system and r.case == m.case]
    if not mine:
        return "—"  # the system does not take part in this case (or it was not run)
    if any(r.skipped for r in mine):
        return "not run"
    if any(r.error for r in mine):
        return "failed"
    if mine and m.key == "enqueue_batch_rate":
        return "no batch API"
    return "n/a"


def best_peer(vals: dict[tuple[str, str, str], list[float]], systems: list[str], m: Metric) -> tuple[str, float] | None:
    peers = [(s, v) for s in systems
             if s != OURS and s not in REFERENCES and (v := median_of(vals, s, m.case, m.key)) is not None]  # fmt: skip
    if not peers:
        return None
    return max(peers, key=lambda sv: sv[1]) if m.higher else min(peers, key=lambda sv: sv[1])


def table(runs: list[Run], systems: list[str], cases: list[str]) -> str:
    """Markdown: one row per metric, one column per system (median, range over repetitions), then
    aiotaskq against the best peer of the same run, the target and whether it is met."""
    vals = values(runs)
    head = ["metric", *systems, "aiotaskq vs best peer", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        if m.case not in cases:
            continue
        cells = [_cell(runs, vals, s, m) for s in systems]
        ours = median_of(vals, OURS, m.case, m.key)
        best = best_peer(vals, systems, m)
        versus = met = ""
        if ours is not None and best is not None and m.compare:
            versus = f"{advantage(m, ours, best[1]):.2f}x {'better' if advantage(m, ours, best[1]) >= 1 else 'worse'}"
            versus += f" ({best[0]})"
        if ours is not None:
            met = m.met(ours, best[1] if best else None)
        lines.append("| " + " | ".join([m.label, *cells, versus, m.target, met]) + " |")
    for ratio in RATIOS:
        if ratio.top[0] not in cases or ratio.bottom[0] not in cases:
            continue
        cells, ours = [], None
        for s in systems:
            top, bottom = median_of(vals, s, *ratio.top), median_of(vals, s, *ratio.bottom)
            value = top / bottom if top is not None and bottom else None
            cells.append(f"{value:.2f}" if value is not None else "n/a")
            if s == OURS:
                ours = value
        met = ("yes" if ours >= ratio.limit else "**no**") if ours is not None and ratio.target else ""
        lines.append("| " + " | ".join([ratio.label, *cells, "", ratio.target, met]) + " |")
    lines += [_share_row(vals, systems, share) for share in SHARES if share.case in cases]
    return "\n".join(lines)


def _share_row(vals: dict[tuple[str, str, str], list[float]], systems: list[str], share: Share) -> str:
    reference = median_of(vals, share.reference, share.case, share.key)
    cells, ours = [], None
    for s in systems:
        value = median_of(vals, s, share.case, share.key)
        pct = value / reference * 100 if value is not None and reference else None
        cells.append(f"{pct:.0f}%" if pct is not None else "—")
        if s == OURS:
            ours = pct
    met = ("yes" if ours >= share.limit else "**no**") if ours is not None else ""
    return "| " + " | ".join([share.label, *cells, "", share.target, met]) + " |"


def breakdown(runs: list[Run], system: str) -> str:
    """Median Redis commands per job in the drain workload, by command (Lua's included)."""
    drains = [r.details.get("commands_per_job", {}) for r in runs
              if r.system == system and r.case == "drain" and r.error is None and r.skipped is None]  # fmt: skip
    names = {name for d in drains for name in d}
    rows = sorted(((statistics.median(d.get(k, 0.0) for d in drains), k) for k in names), reverse=True)
    return ", ".join(f"{name} {n:.2f}" for n, name in rows if n >= 0.005)


# -- machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return "unknown"
    return f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else "unknown"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=cwd, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews the figures."""
    return os.getloadavg()[0]


def machine(systems: list[str], root: Path, load: tuple[float, float], loop: str) -> dict[str, str]:
    redis_v = re.search(r"v=(\S+)", _run(["redis-server", "--version"]))
    commit = _run(["git", "rev-parse", "--short", "HEAD"], root)
    dirty = _run(["git", "status", "--porcelain", "--", "aiotaskq"], root)
    changed = " + uncommitted changes in aiotaskq/" if commit and dirty else ""
    packages: dict[str, str] = {}
    for s in systems:
        for dist in system_class(s).packages:
            packages[dist] = version(dist)
    event_loop = f"uvloop {version('uvloop')}" if loop == "uvloop" else "asyncio's default event loop"
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": _mem_total(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()} (`{sys.executable}`), "
        f"{event_loop} in every process",
        "redis-server": (redis_v.group(1) if redis_v else "unknown") + ", private, no persistence (`--save ''`)",
        "libraries": ", ".join(f"{k} {v}" for k, v in packages.items()),
        "aiotaskq commit": (commit or "unknown") + changed,
        "load average (1 min)": f"{load[0]:.2f} before the run, {load[1]:.2f} after",
    }


# -- docs/benchmarks.md ------------------------------------------------------------------------


@dataclass
class Page:
    """What a results block says besides the table."""

    loop: str
    command: str
    reps: int
    params: dict[str, dict[str, Any]]
    info: dict[str, str]
    images: list[str]
    minutes: float


def results_block(runs: list[Run], systems: list[str], cases: list[str], page: Page) -> str:
    begin, end = markers(page.loop)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    times = "once" if page.reps == 1 else f"{page.reps} times, medians with the range over repetitions in brackets"
    lines = [begin, "", f"Measured {when} with `{page.command}` (each case {times}; {page.minutes:.0f} minutes "
             f"in all), systems alternating within each repetition.", "", table(runs, systems, cases), ""]  # fmt: skip
    lines += ["Sizes and settings of this run:", ""]
    lines += [f"- **{c}**: " + ", ".join(f"{k}={v}" for k, v in page.params[c].items()) for c in cases]
    knobs = [f"- **{s}**: {system_class(s).knobs}" for s in systems]
    lines += ["", "Settings of each system (anything not named is at its default):", "", *knobs]
    for s in systems:
        if "drain" in cases and (b := breakdown(runs, s)):
            lines += ["", f"Redis commands per job in W1's drain ({s}; Lua's included): {b}."]
    skipped = sorted({(r.system, r.case, r.skipped) for r in runs if r.skipped})
    if skipped:
        lines += ["", "Not run:", ""] + [f"- {s} {c}: {why}" for s, c, why in skipped]
    errors = [r for r in runs if r.error]
    if errors:
        lines += ["", "Failed runs (not in the medians):", ""]
        lines += [f"- {r.system} {r.case} repetition {r.rep + 1}: {r.error}" for r in errors]
    notes = sorted({(r.system, r.case, n) for r in runs for n in r.details.get("notes", [])})
    if notes:
        lines += ["", "Notes from the runs:", ""] + [f"- {s} {c}: {n}" for s, c, n in notes]
    lines += [""] + [f"![{Path(p).stem}]({p})" for p in page.images]
    lines += ["", "| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in page.info.items()]
    return "\n".join([*lines, "", end])


def write_doc(path: Path, block: str, loop: str) -> None:
    """Replace the results block of ``loop`` in ``path`` (appended when the page has none)."""
    begin, end = markers(loop)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        text = text[:start] + block + text[stop + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def argv_command(root: Path) -> str:
    """The command line of this run, with the interpreter as the user typed it from ``root``."""
    exe = Path(sys.executable)
    python = str(exe.relative_to(root)) if exe.is_relative_to(root) else "python"
    return shlex.join([python, "-m", "benchmarks", *sys.argv[1:]])
