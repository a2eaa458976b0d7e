"""``python -m benchmarks``: run the workloads on a private redis-server and report medians.

Every repetition of every workload runs in a fresh subprocess (``benchmarks.run``)
under a hard timeout, on a fresh queue name, after a ``FLUSHALL`` of the private
server; systems alternate within each repetition (A B C, A B C, ...). The table
goes to stdout and, for a full run, into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from redis import Redis

from aiotaskq.testing import RedisServer

from . import report
from .adapter import SYSTEMS
from .report import Run

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("latency", "drain", "memory", "io")

DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"jobs": 1000, "interval": 0.005, "warmup": 20, "concurrency": 100},
    "drain": {"jobs": 20_000, "concurrency": 100, "inflight": 100},
    "memory": {"jobs": 100_000},
    "io": {"jobs": 5_000, "concurrency": 100},
}
QUICK: dict[str, dict[str, Any]] = {
    "latency": {"jobs": 50, "warmup": 5},
    "drain": {"jobs": 1_000},
    "memory": {"jobs": 2_000},
    "io": {"jobs": 300},
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help=f"run these workloads only (repeat, or comma-separate): {', '.join(WORKLOADS)}",
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems (default: %(default)s)")
    p.add_argument("--reps", type=int, default=None, help="repetitions of each workload (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, 1 repetition")
    p.add_argument("--timeout", type=float, default=None, help="hard timeout per run, seconds (default 300; 60 quick)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="WORKLOAD.PARAM=VALUE",
        help="override a size or setting, e.g. --set latency.jobs=500",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="page whose results block to rewrite (default: docs/benchmarks.md after a standard full run)",
    )
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--json", type=Path, default=None, help="also dump every run as JSON here")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    chosen = [w.strip() for item in args.only for w in item.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"--only: unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(WORKLOADS)}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or set(systems) - set(SYSTEMS):
        raise SystemExit(f"--systems: known systems are {', '.join(SYSTEMS)}")
    params = {w: DEFAULTS[w] | (QUICK[w] if args.quick else {}) for w in WORKLOADS}
    for item in args.set:
        key, _, value = item.partition("=")
        workload, _, name = key.partition(".")
        if workload not in params or name not in params[workload]:
            raise SystemExit(f"--set {item}: expected WORKLOAD.PARAM=VALUE with a known parameter")
        params[workload][name] = type(params[workload][name])(value)
    return [w for w in WORKLOADS if w in chosen], systems, {w: params[w] for w in WORKLOADS if w in chosen}


def run_one(system: str, workload: str, rep: int, url: str, params: dict[str, Any], timeout: float) -> Run:
    """One repetition in a fresh process group, killed whole at the timeout."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"  # fresh, and as short as a real queue name
    cmd = [sys.executable, "-m", "benchmarks.run", "--system", system, "--workload", workload,
           "--url", url, "--queue", queue, "--params", json.dumps(params)]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Run(system, workload, rep, time.monotonic() - t0, error=f"timed out after {timeout:g}s")
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.monotonic() - t0
    lines = [line for line in out.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return Run(system, workload, rep, seconds, error=f"no result (exit code {proc.returncode})")
    if "error" in result or proc.returncode != 0:
        return Run(system, workload, rep, seconds, error=result.get("error", f"exit code {proc.returncode}"))
    return Run(system, workload, rep, seconds, result["metrics"], result.get("details", {}))


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def progress(run: Run, reps: int) -> None:
    head = f"[rep {run.rep + 1}/{reps}] {run.system} {run.workload}"
    body = f"ERROR {run.error}" if run.error else "  ".join(f"{k}={v:,.2f}" for k, v in run.metrics.items())
    print(f"{head}: {body}  ({run.seconds:.1f}s)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workloads, systems, params = plan(args)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        raise SystemExit("--reps: must be at least 1")
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 300.0)
    if timeout <= 0:
        raise SystemExit("--timeout: must be > 0 seconds")
    runs: list[Run] = []
    load_before = report.load_average()
    with RedisServer() as server:
        print(f"redis-server on port {server.port}; {reps} repetition(s) of {', '.join(workloads)} "
              f"on {', '.join(systems)}", file=sys.stderr)  # fmt: skip
        with Redis.from_url(server.url) as r:
            for rep in range(reps):
                for workload in workloads:
                    for system in systems:  # alternate systems within each repetition
                        r.flushall()
                        run = run_one(system, workload, rep, server.url, params[workload], timeout)
                        runs.append(run)
                        progress(run, reps)
    load_after = report.load_average()
    print(report.table(runs, systems, workloads))
    # Only a standard run (every workload and system, default sizes) replaces the page's figures.
    standard = not (args.quick or args.only or args.set or args.systems != ",".join(SYSTEMS))
    output = args.output or (ROOT / "docs" / "benchmarks.md" if standard else None)
    if output is not None and not args.no_write:
        info = report.machine(systems, ROOT, (load_before, load_after))
        report.write_doc(output, report.results_block(runs, systems, workloads, params, report.argv_command(ROOT),
                                                      info, reps))  # fmt: skip
        print(f"results written to {output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([run.__dict__ for run in runs], indent=1))
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
