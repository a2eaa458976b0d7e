"""Medians, the markdown table, machine details, and the results block of ``docs/benchmarks.md``."""

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

from .adapter import system_class

OURS = "aiotaskq"  # the system the targets are for
BEGIN = "<!-- results: begin (written by `python -m benchmarks`; edit the text around it, not inside) -->"
END = "<!-- results: end -->"


@dataclass
class Run:
    """One repetition of one workload on one system."""

    system: str
    workload: str
    rep: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Metric:
    workload: str
    key: str
    label: str
    fmt: str
    target: str = ""
    limit: float | None = None  # the target as a bound, when it is an absolute one
    lower_is_better: bool = True

    def met(self, value: float) -> str:
        if self.limit is None:
            return ""
        ok = value <= self.limit if self.lower_is_better else value >= self.limit
        return "yes" if ok else "**no**"


# Targets of issue 4 ("Benchmarks against arq, SAQ, streaq and taskiq"). Most are relative to the
# fastest peer in the same run; until the peers run in this harness, the bounds below use the peer
# figures that issue quotes (measured on this machine before any aiotaskq code existed).
METRICS: tuple[Metric, ...] = (
    Metric("latency", "latency_p50_ms", "enqueue→start p50 (ms)", ".2f", "≤ 0.6 (best peer)", 0.6),
    Metric("latency", "latency_p95_ms", "enqueue→start p95 (ms)", ".2f"),
    Metric("latency", "latency_p99_ms", "enqueue→start p99 (ms)", ".2f", "< 2, ≤ 1.2 (best peer)", 1.2),
    Metric("latency", "latency_max_ms", "enqueue→start max (ms)", ".2f"),
    Metric("drain", "enqueue_rate", "enqueue, 100 calls in flight (jobs/s)", ",.0f"),
    Metric("drain", "enqueue_batch_rate", "`enqueue_many` (jobs/s)", ",.0f", "3x the fastest peer (not run yet)"),
    Metric(
        "drain", "drain_rate", "drain, 1 worker process (jobs/s)", ",.0f", "≥ 12,000 (5x peer's 2,400)", 12000, False
    ),
    Metric("drain", "cpu_us_per_job", "worker CPU per job (µs)", ".1f", "< 80", 80.0),
    Metric("drain", "cmds_per_job", "Redis commands per job, Lua's included", ".1f", "≤ 2", 2.0),
    Metric("drain", "script_calls_per_job", "script calls (EVALSHA) per job", ".2f"),
    Metric("drain", "reads_per_job", "Redis socket reads per job (≈ round trips)", ".2f"),
    Metric("memory", "memory_bytes_per_job", "Redis memory per queued job (bytes)", ".0f", "< 300", 300.0),
    Metric("io", "io_drain_s", "10 ms sleeps: drain time (s)", ".3f"),
    Metric("io", "io_ideal_s", "10 ms sleeps: ideal (s)", ".3f"),
    Metric("io", "io_over_ideal_pct", "10 ms sleeps: over ideal (%)", ".0f", "≤ 15", 15.0),
)


def medians(runs: Iterable[Run]) -> dict[tuple[str, str], list[float]]:
    """(system, metric) -> the values of the successful repetitions."""
    out: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if run.error is None:
            for key, value in run.metrics.items():
                out.setdefault((run.system, key), []).append(value)
    return out


def table(runs: list[Run], systems: list[str], workloads: list[str]) -> str:
    """Markdown: one row per metric, one column per system: median (min-max over repetitions)."""
    values = medians(runs)
    head = ["workload", "metric", *systems, "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        if m.workload not in workloads:
            continue
        cells = []
        for s in systems:
            vs = values.get((s, m.key))
            if not vs:
                cells.append("error" if any(r.system == s and r.workload == m.workload for r in runs) else "n/a")
                continue
            low, high = f"{min(vs):{m.fmt}}", f"{max(vs):{m.fmt}}"
            spread = f" ({low} to {high})" if low != high else ""
            cells.append(f"{statistics.median(vs):{m.fmt}}{spread}")
        ours = values.get((OURS, m.key))
        met = m.met(statistics.median(ours)) if ours else ""
        lines.append("| " + " | ".join([m.workload, m.label, *cells, m.target, met]) + " |")
    return "\n".join(lines)


def breakdown(runs: list[Run], system: str) -> str:
    """Median Redis commands per job in the drain workload, by command (Lua's included)."""
    drains = [r.details.get("commands_per_job", {}) for r in runs
              if r.system == system and r.workload == "drain" and r.error is None]  # fmt: skip
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


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews the figures."""
    return os.getloadavg()[0]


def machine(systems: list[str], root: Path, load: tuple[float, float]) -> dict[str, str]:
    redis_v = re.search(r"v=(\S+)", _run(["redis-server", "--version"]))
    commit = _run(["git", "rev-parse", "--short", "HEAD"], root)
    dirty = _run(["git", "status", "--porcelain", "--", "aiotaskq"], root)
    changed = " + uncommitted changes in aiotaskq/" if commit and dirty else ""
    packages: dict[str, str] = {}
    for s in systems:
        for dist in system_class(s).packages:
            packages[dist] = _version(dist)
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": _mem_total(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}, asyncio default event loop",
        "redis-server": (redis_v.group(1) if redis_v else "unknown") + ", private, no persistence (`--save ''`)",
        "libraries": ", ".join(f"{k} {v}" for k, v in packages.items()),
        "aiotaskq commit": (commit or "unknown") + changed,
        "load average (1 min)": f"{load[0]:.2f} before the run, {load[1]:.2f} after",
    }


# -- docs/benchmarks.md ------------------------------------------------------------------------


def results_block(
    runs: list[Run],
    systems: list[str],
    workloads: list[str],
    params: dict[str, dict[str, Any]],
    command: str,
    info: dict[str, str],
    reps: int,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    times = "once" if reps == 1 else f"{reps} times, medians with the range over repetitions in brackets"
    lines = [BEGIN, "", f"Measured {when} with `{command}` (each workload {times}).", "",
             table(runs, systems, workloads), ""]  # fmt: skip
    lines += ["Sizes and settings of this run:", ""]
    lines += [f"- **{w}**: " + ", ".join(f"{k}={v}" for k, v in params[w].items()) for w in workloads]
    for s in systems:
        if "drain" in workloads and (b := breakdown(runs, s)):
            lines += ["", f"Redis commands per job in the drain workload ({s}; Lua's included): {b}."]
    errors = [r for r in runs if r.error]
    if errors:
        lines += ["", "Failed runs (not in the medians):", ""]
        lines += [f"- {r.system} {r.workload} repetition {r.rep + 1}: {r.error}" for r in errors]
    lines += ["", "| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()]
    return "\n".join([*lines, "", END])


def write_doc(path: Path, block: str) -> None:
    """Replace the results block of ``path`` (appended when the page has none)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + block + text[end + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def argv_command(root: Path) -> str:
    """The command line of this run, with the interpreter as the user typed it from ``root``."""
    exe = Path(sys.executable)
    python = str(exe.relative_to(root)) if exe.is_relative_to(root) else "python"
    return shlex.join([python, "-m", "benchmarks", *sys.argv[1:]])
