"""``python -m benchmarks.flow``: what the flow-control features cost. Redis CPU per job and
drain rate of W1-style drains (``--jobs`` jobs enqueued in batches, drained by one pool of
concurrency 100) for: plain no-op jobs on this code and on ``--base`` (a commit before the
flow-control features: pause, rate limits, expiry, keys, dependencies), and on this code a
rate-limited task (10,000/s), a keyed task (key_concurrency=5, 200 keys) and groups of 100
members with a callback. Each run is a fresh subprocess (``flow_run.py``) against one private
redis-server, restarted empty before each run; the two plain runs go side by side, which first alternating; medians
of ``--reps``. ``--write`` puts the table into docs/flow-control.md."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aiotaskq.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "flow-control.md"
BEGIN, END = "<!-- flow:begin -->", "<!-- flow:end -->"
VARIANTS = [("base", "plain"), ("head", "plain"), ("head", "limited"), ("head", "keyed"), ("head", "groups")]
LABELS = {
    ("base", "plain"): "plain jobs, before flow control ({base})",
    ("head", "plain"): "plain jobs, this code",
    ("head", "limited"): "rate-limited task (10,000/s)",
    ("head", "keyed"): "keyed task (K=5, 200 keys)",
    ("head", "groups"): "groups of 100 + callback",
}


def run(code: Path, url: str, workload: str, jobs: int, concurrency: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "flow_run.py"), url, workload, str(jobs), str(concurrency)],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def table(results: dict[tuple[str, str], list[dict[str, float]]], jobs: int, reps: int, base: str) -> str:
    lines = [
        f"Medians of {reps} runs of {jobs:,} jobs (groups: {jobs // 100} groups of 100 members, and their "
        "callbacks), one in-process pool (concurrency 100), one local redis-server. Redis CPU in "
        "microseconds of redis-server per job, enqueue + drain (claim, settle, and for groups the callbacks).",
        "",
        "| workload | Redis CPU per job (µs) | vs plain | drain (jobs/s) | vs plain |",
        "|---|---:|---:|---:|---:|",
    ]
    plain = results[("head", "plain")]
    p_cpu = statistics.median((r["enqueue_cpu"] + r["drain_cpu"]) / jobs * 1e6 for r in plain)
    p_rate = statistics.median(jobs / r["drain_s"] for r in plain)
    for variant in VARIANTS:
        rs = results[variant]
        cpu = statistics.median((r["enqueue_cpu"] + r["drain_cpu"]) / jobs * 1e6 for r in rs)
        rate = statistics.median(jobs / r["drain_s"] for r in rs)
        label = LABELS[variant].format(base=base)
        lines.append(f"| {label} | {cpu:.1f} | {cpu / p_cpu:.2f}x | {rate:,.0f} | {rate / p_rate:.2f}x |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="aiotaskq-flow-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
                       check=True, capture_output=True)  # fmt: skip
        try:
            results: dict[tuple[str, str], list[dict[str, float]]] = {v: [] for v in VARIANTS}
            with RedisServer() as server:
                for rep in range(args.reps):
                    pair = VARIANTS[:2] if rep % 2 == 0 else VARIANTS[1::-1]  # the A/B pair side by side,
                    for variant in [*pair, *VARIANTS[2:]]:  # which goes first alternating
                        server.restart()  # each run on an empty server: kept records slow the next
                        code = base_tree if variant[0] == "base" else ROOT
                        r = run(code, server.url, variant[1], args.jobs, args.concurrency)
                        n = args.jobs + (args.jobs // 100 if variant[1] == "groups" else 0)
                        if r["ended"] < n:
                            raise SystemExit(f"{variant}: {r['ended']} of {n} jobs ended")
                        results[variant].append(r)
                        cpu = (r["enqueue_cpu"] + r["drain_cpu"]) / args.jobs * 1e6
                        print(f"rep {rep + 1} {variant}: {cpu:.1f} us/job, {args.jobs / r['drain_s']:,.0f} jobs/s",
                              file=sys.stderr)  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                           check=False, capture_output=True)  # fmt: skip
    return table(results, args.jobs, args.reps, args.base)


def write(text: str) -> None:
    doc = DOC.read_text()
    new = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", f"{BEGIN}\n{text}\n{END}", doc, flags=re.DOTALL)
    if BEGIN not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
    DOC.write_text(new)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--base", default="c6d8408", help="a commit before the flow-control features")
    parser.add_argument("--write", action="store_true", help="put the table into docs/flow-control.md")
    ns = parser.parse_args()
    out = main(ns)
    print(out)
    if ns.write:
        write(out)
