"""``python -m benchmarks.faults --quick`` runs every fault run end to end, and none loses a job.

The quick sizes are small (about 90 s in all); the full runs and their figures are in
docs/reliability.md ("Measured under faults").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ["kills", "restart", "netcut", "load", "skew", "crash", "failover"]


def test_quick_fault_runs_lose_no_job(tmp_path: Path) -> None:
    page = ROOT / "docs" / "reliability.md"
    page_before = page.read_text()
    dump = tmp_path / "faults.json"
    # A session of its own, so that on a timeout the harness, its workers and its redis-servers all go.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.faults", "--quick", "--json", str(dump)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the quick fault runs took over 180 s:\n{err[-3000:]}") from None

    assert proc.returncode == 0, out[-4000:] + err[-2000:]
    results = json.loads(dump.read_text())
    assert [r["name"] for r in results] == RUNS
    for r in results:
        assert r["error"] is None, r
        assert r["jobs"] > 0 and r["lost"] == 0, r
        assert r["duplicates"] is not None and r["duplicate_bound"] is not None, r
        assert r["duplicates"] <= r["duplicate_bound"], r
        assert r["checks"] and all(ok for _, ok in r["checks"]), r["checks"]
    by_name = {r["name"]: r for r in results}
    assert by_name["kills"]["duplicate_bound"] > 0  # workers were killed with jobs in flight
    assert by_name["restart"]["duplicates"] == 0 and by_name["skew"]["duplicates"] == 0
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| run | jobs | lost |") and {row.split("|")[1].strip() for row in rows[1:]} == set(RUNS)
    assert page.read_text() == page_before  # a quick run never overwrites the measured figures
