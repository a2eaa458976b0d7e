"""``python -m benchmarks --quick`` runs end to end, so the benchmark harness cannot rot.

It runs aiotaskq, the floor reference and, when one is installed in this environment (the
``bench`` extra), one peer; the report's arithmetic is checked on made-up runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import CASES
from benchmarks.adapter import installed
from benchmarks.report import METRICS, Run, table

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("taskiq", "arq", "streaq", "saq")  # the first one installed joins the smoke run


def test_quick_run_prints_a_table_of_measured_figures(tmp_path: Path) -> None:
    page = ROOT / "docs" / "benchmarks.md"
    page_before = page.read_text() if page.exists() else None
    dump = tmp_path / "runs.json"
    peer = next((p for p in PEERS if installed(p)), None)
    systems = ["aiotaskq", "floor"] + ([peer] if peer else [])  # the floor needs only redis-py

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--systems", ",".join(systems), "--json", str(dump)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    runs = json.loads(dump.read_text())
    ours = [r for r in runs if r["system"] == "aiotaskq"]
    assert sorted(r["case"] for r in ours) == sorted(CASES), out.stderr[-4000:]
    assert all(r["error"] is None and r["skipped"] is None for r in ours), ours
    floor = [r for r in runs if r["system"] == "floor"]
    assert sorted(r["case"] for r in floor) == sorted(CASES) and all(r["error"] is None for r in floor), floor
    # a peer's run may fail the harness's checks (a system's own bug), never crash the harness
    assert all(r["error"] is None or r["error"].startswith("BenchError") for r in runs), runs
    assert out.returncode == (1 if any(r["error"] for r in runs) else 0), out.stderr[-4000:]

    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows and rows[0].startswith("| metric | " + " | ".join(systems) + " | aiotaskq vs best peer |"), out.stdout
    body = {cells[0]: cells for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows[1:])}
    for m in METRICS:  # every figure of ours was measured: a number (float() fails on "failed" or "n/a")
        assert math.isfinite(float(body[m.label][1].split(" (")[0].replace(",", ""))), body[m.label]

    drain = next(r for r in ours if r["case"] == "drain")["metrics"]
    assert drain["drain_rate"] > 0 and drain["cpu_us_per_job"] > 0 and drain["cmds_per_job"] > 0
    retries = next(r for r in ours if r["case"] == "retries")
    assert retries["metrics"]["retry_drain_s"] > 0
    # a smoke run never overwrites the measured figures of the docs page
    assert (page.read_text() if page.exists() else None) == page_before


def test_table_compares_ours_with_the_best_peer_and_checks_the_targets() -> None:
    runs = [
        Run("aiotaskq", "drain", 0, 1.0, {"drain_rate": 12_000.0, "cpu_us_per_job": 60.0}),
        Run("aiotaskq", "drain", 1, 1.0, {"drain_rate": 10_000.0, "cpu_us_per_job": 90.0}),
        Run("aiotaskq", "drain", 2, 1.0, error="BenchError: 1 job lost"),  # left out of the medians
        Run("arq", "drain", 0, 1.0, {"drain_rate": 1_000.0, "cpu_us_per_job": 500.0}),
        Run("taskiq", "drain", 0, 1.0, {"drain_rate": 2_000.0, "cpu_us_per_job": 400.0}),
        Run("aiotaskq", "latency", 0, 1.0, {"latency_p50_ms": 2.0}),
        Run("taskiq", "latency", 0, 1.0, {"latency_p50_ms": 1.0}),
    ]

    rows = {
        cells[0]: cells
        for cells in (
            [c.strip() for c in row.strip("|").split("|")]
            for row in table(runs, ["aiotaskq", "arq", "taskiq"], ["drain", "latency"]).splitlines()[2:]
        )
    }

    drain = rows["W1 drain, 1 worker process (jobs/s)"]
    assert drain[1:4] == ["11,000 (10,000 to 12,000)", "1,000", "2,000"]
    assert drain[4:] == ["5.50x better (taskiq)", "≥ 5x best peer", "yes"]
    cpu = rows["W1 worker CPU per job (µs)"]
    assert cpu[1] == "75 (60 to 90)" and cpu[4:] == ["5.33x better (taskiq)", "< 80", "yes"]
    p50 = rows["W2 enqueue→start p50 (ms)"]
    assert p50[1:4] == ["2.00", "n/a", "1.00"] and p50[4:] == ["0.50x worse (taskiq)", "≤ best peer", "**no**"]


def test_the_floor_reference_is_shown_but_never_the_best_peer() -> None:
    runs = [
        Run("aiotaskq", "drain", 0, 1.0, {"drain_rate": 12_000.0, "cpu_us_per_job": 60.0}),
        Run("taskiq", "drain", 0, 1.0, {"drain_rate": 2_000.0, "cpu_us_per_job": 400.0}),
        Run("floor", "drain", 0, 1.0, {"drain_rate": 200_000.0, "cpu_us_per_job": 4.0}),
    ]
    _head, _rule, *body = table(runs, ["aiotaskq", "taskiq", "floor"], ["drain"]).splitlines()
    rows = {cells[0]: cells for cells in ([c.strip() for c in row.strip("|").split("|")] for row in body)}
    drain = rows["W1 drain, 1 worker process (jobs/s)"]
    assert drain[1:4] == ["12,000", "2,000", "200,000"]
    assert drain[4:] == ["6.00x better (taskiq)", "≥ 5x best peer", "yes"]
