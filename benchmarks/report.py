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

from aiotaskq.testing import find_server, server_version

from .adapter import REFERENCES, system_class
from .targets import GAPS, METRICS, RATIOS, SHARES, Gap, Metric, Share, advantage

OURS = "aiotaskq"  # the system the targets are for


def markers(name: str) -> tuple[str, str]:
    """The comments around one results block of the page (by default one per event loop)."""
    return (
        f"<!-- results {name}: begin (written by `python -m benchmarks`; edit the text around it, not inside) -->",
        f"<!-- results {name}: end -->",
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


def table(runs: list[Run], systems: list[str], cases: list[str], loop: str = "asyncio") -> str:
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
            met = m.met(ours, best[1] if best else None, loop)
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
    lines += [_share_row(vals, systems, share) for share in SHARES
              if share.case in cases and share.reference in systems]  # fmt: skip
    lines += [_gap_row(vals, systems, gap) for gap in GAPS if gap.case in cases and gap.reference in systems]
    return "\n".join(lines)


def _gap_row(vals: dict[tuple[str, str, str], list[float]], systems: list[str], gap: Gap) -> str:
    reference = median_of(vals, gap.reference, gap.case, gap.key)
    cells, ours = [], None
    for s in systems:
        value = median_of(vals, s, gap.case, gap.key)
        diff = value - reference if value is not None and reference is not None else None
        cells.append(f"{diff:+.1f}" if diff is not None else "—")
        if s == OURS:
            ours = diff
    met = ("yes" if ours <= gap.limit else "**no**") if ours is not None and gap.target else ""
    return "| " + " | ".join([gap.label, *cells, "", gap.target, met]) + " |"


def _share_row(vals: dict[tuple[str, str, str], list[float]], systems: list[str], share: Share) -> str:
    reference = median_of(vals, share.reference, share.case, share.key)
    cells, ours = [], None
    for s in systems:
        value = median_of(vals, s, share.case, share.key)
        pct = value / reference * 100 if value is not None and reference else None
        cells.append(f"{pct:.0f}%" if pct is not None else "—")
        if s == OURS:
            ours = pct
    met = ("yes" if ours >= share.limit else "**no**") if ours is not None and share.target else ""
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
    try:
        server = server_version(find_server())  # what RedisServer runs, e.g. "Redis server v=7.0.15"
    except (OSError, RuntimeError):
        server = "unknown"
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
        "redis-server": server + ", private, no persistence (`--save ''`)",
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
    block: str = ""  # the results block's name (default: the loop's)


def results_block(runs: list[Run], systems: list[str], cases: list[str], page: Page) -> str:
    begin, end = markers(page.block or page.loop)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    times = "once" if page.reps == 1 else f"{page.reps} times, medians with the range over repetitions in brackets"
    lines = [begin, "", f"Measured {when} with `{page.command}` (each case {times}; {page.minutes:.0f} minutes "
             f"in all), systems alternating within each repetition.", "",
             table(runs, systems, cases, page.loop), ""]  # fmt: skip
    lines += ["Sizes and settings of this run:", ""]
    lines += [f"- **{c}**: " + ", ".join(f"{k}={v}" for k, v in page.params[c].items()) for c in cases]
    loaders = sorted({r.details["loader"] for r in runs if "loader" in r.details})
    if loaders:
        lines += [f"- **HTTP load generator**: {', '.join(loaders)} (`hey -n REQUESTS -c CLIENTS -m POST -cpus 1`, "
                  f"or benchmarks/http_load.py's asyncio loop where hey is missing); uvicorn, one process"]  # fmt: skip
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


def write_doc(path: Path, block: str, name: str) -> None:
    """Replace the results block ``name`` in ``path`` (appended when the page has none)."""
    begin, end = markers(name)
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
