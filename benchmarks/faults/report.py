"""The results table, the details per run, and the block of docs/reliability.md they go to."""

from __future__ import annotations

import os
import platform
import shlex
from datetime import UTC, datetime
from pathlib import Path

from aiotaskq.testing import find_server, server_version

from .harness import ROOT, Result

BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
SECTION = "## Measured under faults"
DOC = ROOT / "docs" / "reliability.md"


def table(results: list[Result]) -> str:
    rows = ["| run | jobs | lost | duplicate runs (bound) | headline figure | checks | time |",
            "|---|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for r in results:
        passed = sum(1 for _, ok in r.checks if ok)
        verdict = f"{passed}/{len(r.checks)} ok" if r.error is None else f"ERROR: {r.error}"
        bound = "-" if r.duplicate_bound is None else str(r.duplicate_bound)
        dup = "-" if r.duplicates is None else f"{r.duplicates} ({bound})"
        lost = "-" if r.lost is None else str(r.lost)
        rows.append(f"| {r.name} | {r.jobs:,} | {lost} | {dup} | {r.headline or '-'} | {verdict} | {r.seconds:.0f}s |")
    return "\n".join(rows)


def details(results: list[Result], *, heading: str = "###") -> str:
    out: list[str] = []
    for r in results:
        out.append(f"{heading} {r.title} (`{r.name}`)\n")
        out.extend(f"- {label}: {value}" for label, value in r.figures.items())
        if r.checks:
            out.append("")
            out.extend(f"- [{'x' if ok else ' '}] {claim}" for claim, ok in r.checks)
        if r.error:
            out.append(f"\n**Error:** {r.error}")
        for note in r.notes:
            body = note.split("\n", 1)
            out.append(f"\n{body[0]}" + (f"\n\n```\n{body[1]}\n```" if len(body) > 1 else ""))
        out.append("")
    return "\n".join(out)


def machine() -> str:
    try:
        server = server_version(find_server())  # what RedisServer runs, e.g. "Redis server v=7.0.15"
    except (OSError, RuntimeError):
        server = "Redis server ?"
    load = os.getloadavg()
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{server}; load average at the end "
            f"{load[0]:.1f} (other work shared the machine)")  # fmt: skip


def command(argv: list[str]) -> str:
    """The command that measured, without the options that only say where results go."""
    kept: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--json", "--output"):
            skip = True
        elif not a.startswith(("--json=", "--output=")) and a != "--no-write":
            kept.append(a)
    return " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.faults", *kept])


def block(results: list[Result], argv: list[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return "\n".join([
        BEGIN,
        f"Measured on {when} with `{command(argv)}` ({machine()}); the harness is `benchmarks/faults/`.",
        "",
        table(results),
        "",
        details(results, heading="###"),
        END,
    ])  # fmt: skip


def write_doc(path: Path, text: str) -> None:
    """Replace the block between the markers, or append the section with it."""
    page = path.read_text() if path.exists() else "# Reliability\n"
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        page = head + text + tail
    else:
        page = page.rstrip("\n") + f"\n\n{SECTION}\n\n{text}\n"
    path.write_text(page)
