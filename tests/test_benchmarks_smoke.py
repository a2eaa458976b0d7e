"""``python -m benchmarks --quick`` runs end to end, so the benchmark harness cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"latency", "drain", "memory", "io"}


def test_quick_run_prints_a_table_of_measured_figures(tmp_path: Path) -> None:
    page = ROOT / "docs" / "benchmarks.md"
    page_before = page.read_text() if page.exists() else None
    dump = tmp_path / "runs.json"

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(dump)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert out.returncode == 0, out.stderr[-4000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows and rows[0].startswith("| workload | metric | aiotaskq |"), out.stdout
    body = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]
    assert {cells[0] for cells in body} == WORKLOADS
    for cells in body:  # every figure was measured: a number, not "error" or "n/a"
        assert float(cells[2].replace(",", "")) >= 0, cells

    runs = json.loads(dump.read_text())
    assert sorted(r["workload"] for r in runs) == sorted(WORKLOADS)
    assert all(r["error"] is None for r in runs), runs
    drain = next(r for r in runs if r["workload"] == "drain")["metrics"]
    assert drain["drain_rate"] > 0 and drain["cpu_us_per_job"] > 0 and drain["script_calls_per_job"] > 0
    # a smoke run never overwrites the measured figures of the docs page
    assert (page.read_text() if page.exists() else None) == page_before
