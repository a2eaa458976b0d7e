"""``python -m benchmarks``: run the workloads on every installed system, on a private
redis-server, and report medians.

Every repetition of every case runs in a fresh subprocess (``benchmarks.run``) under a hard
timeout, on a fresh queue name, after a ``FLUSHALL`` of the private server; systems alternate
within each repetition (A B C, A B C, ...). The table goes to stdout and, for a full run,
with charts, into ``docs/benchmarks.md`` and ``docs/img/``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
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

from . import charts, report
from .adapter import SYSTEMS, installed
from .adapter import runs as runs_workload
from .report import Page, Run

ROOT = Path(__file__).resolve().parent.parent

# case -> (workload, its parameters); the order is the order of a repetition
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "latency": ("latency", {"jobs": 1000, "interval": 0.005, "warmup": 20, "concurrency": 100}),
    "drain": ("drain", {"jobs": 20_000, "concurrency": 100, "inflight": 100}),
    "io": ("io", {"jobs": 5_000, "concurrency": 100}),
    "retries": ("retries", {"jobs": 10_000, "concurrency": 100}),
    "scale_1k": ("scale", {"jobs": 1_000, "workers": 1, "concurrency": 100, "measure": 20_000}),
    "scale_100k": ("scale", {"jobs": 100_000, "workers": 1, "concurrency": 100, "measure": 20_000}),
    "scale_4w": ("scale", {"jobs": 100_000, "workers": 4, "concurrency": 100, "measure": 20_000}),
    "scale_1m": ("scale", {"jobs": 1_000_000, "workers": 1, "concurrency": 100, "measure": 20_000}),
    "single_1": ("single", {"jobs": 10_000, "in_flight": 1}),
    "single_100": ("single", {"jobs": 10_000, "in_flight": 100}),
    "http_50": ("http", {"requests": 10_000, "clients": 50, "warmup": 200, "loader": "auto"}),
    "http_200": ("http", {"requests": 10_000, "clients": 200, "warmup": 200, "loader": "auto"}),
}
# --only also takes the workloads' numbers from docs/benchmarks.md
ALIASES = {"w1": "drain", "w2": "latency", "w3": "io", "w4": "scale", "w5": "retries", "w6": "single", "http": "http"}
QUICK: dict[str, dict[str, Any]] = {
    "latency": {"jobs": 50, "warmup": 5},
    "drain": {"jobs": 1_000},
    "io": {"jobs": 300},
    "retries": {"jobs": 300},
    "scale_1k": {"jobs": 300},
    "scale_100k": {"jobs": 2_000, "measure": 1_000},
    "scale_4w": {"jobs": 2_000, "measure": 1_000},
    "scale_1m": {"jobs": 4_000, "measure": 1_000},
    "single_1": {"jobs": 300},
    "single_100": {"jobs": 1_000},
    "http_50": {"requests": 500, "warmup": 20},
    "http_200": {"requests": 1_000, "warmup": 20},
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--only", action="append", default=[], metavar="CASE",
                   help=f"run these cases only (repeat, or comma-separate; a workload name selects all its cases): "
                        f"{', '.join(CASES)}")  # fmt: skip
    p.add_argument("--systems", default="", help=f"comma-separated systems (default: those installed of "
                   f"{', '.join(SYSTEMS)})")  # fmt: skip
    p.add_argument("--reps", type=int, default=None, help="repetitions of each case (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, 1 repetition")
    p.add_argument("--uvloop", action="store_true", help="run every process on uvloop's event loop")
    p.add_argument("--timeout", type=float, default=None, help="hard timeout per run, seconds (default 120; 60 quick)")
    p.add_argument("--set", action="append", default=[], metavar="CASE.PARAM=VALUE",
                   help="override a size or setting, e.g. --set latency.jobs=500")  # fmt: skip
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="page whose results block to rewrite (default: docs/benchmarks.md after a standard run)",
    )
    p.add_argument("--write", action="store_true", help="rewrite the page after a run that is not standard too")
    p.add_argument("--block", default="", metavar="NAME",
                   help="the page's results block to rewrite (default: the event loop's)")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--json", type=Path, default=None, help="also dump every run as JSON here")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    wanted = {w.strip() for item in args.only for w in item.split(",") if w.strip()}
    wanted = {ALIASES.get(w.lower(), w) for w in wanted}
    unknown = wanted - set(CASES) - {workload for workload, _ in CASES.values()}
    if unknown:
        raise SystemExit(f"--only: unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    cases = [c for c, (w, _) in CASES.items() if not wanted or c in wanted or w in wanted]
    if args.systems:
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        if set(systems) - set(SYSTEMS):
            raise SystemExit(f"--systems: known systems are {', '.join(SYSTEMS)}")
        missing = [s for s in systems if not installed(s)]
        if missing:
            raise SystemExit(f"--systems: not installed here: {', '.join(missing)} (pip install -e '.[bench]')")
    else:
        systems = [s for s in SYSTEMS if installed(s)]
    if any(CASES[c][0] == "http" for c in cases) and not installed("baseline"):
        raise SystemExit("the http cases need fastapi and uvicorn (pip install -e '.[bench]'); leave them out "
                         "with --only")  # fmt: skip
    params = {c: CASES[c][1] | (QUICK[c] if args.quick else {}) for c in CASES}
    for item in args.set:
        key, _, value = item.partition("=")
        case, _, name = key.partition(".")
        if case not in params or name not in params[case]:
            raise SystemExit(f"--set {item}: expected CASE.PARAM=VALUE with a known parameter")
        params[case][name] = type(params[case][name])(value)
    return cases, systems, {c: params[c] for c in cases}


def run_one(system: str, case: str, rep: int, url: str, params: dict[str, Any], timeout: float, uvloop: bool) -> Run:
    """One repetition in a fresh process group, killed whole at the timeout."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"  # fresh, and as short as a real queue name
    cmd = [sys.executable, "-m", "benchmarks.run", "--system", system, "--workload", CASES[case][0],
           "--url", url, "--queue", queue, "--params", json.dumps(params)]  # fmt: skip
    if uvloop:
        cmd.append("--uvloop")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Run(system, case, rep, time.monotonic() - t0, error=f"timed out after {timeout:g}s")
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.monotonic() - t0
    _kill_group(proc)  # worker processes left behind by a failed run
    lines = [line for line in out.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return Run(system, case, rep, seconds, error=f"no result (exit code {proc.returncode})")
    if "error" in result or proc.returncode != 0:
        return Run(system, case, rep, seconds, error=result.get("error", f"exit code {proc.returncode}"))
    return Run(system, case, rep, seconds, result["metrics"], result.get("details", {}))


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def skip_reason(runs: list[Run], system: str, case: str, params: dict[str, Any], timeout: float) -> str | None:
    """Why a scale case is not worth running for ``system``: it timed out on fewer jobs, or its
    rates on fewer jobs say it would not finish within the timeout."""
    if CASES[case][0] != "scale":
        return None
    jobs, workers = params["jobs"], params["workers"]
    smaller = [r for r in runs if r.system == system and CASES[r.case][0] == "scale" and r.skipped is None
               and r.details.get("jobs", 0) < jobs and r.details.get("workers_n", workers) == workers]  # fmt: skip
    for r in smaller:
        if r.error and r.error.startswith("timed out"):
            return f"timed out with {r.details.get('jobs', 'fewer')} jobs"
    done = [r for r in smaller if r.error is None]
    if not done:
        return None
    last = max(done, key=lambda r: r.details["jobs"])
    m = last.metrics
    more_drained = min(jobs, params["measure"]) - last.details.get("measured_jobs", last.details["jobs"])
    more = (jobs - last.details["jobs"]) / m["fill_rate"] + max(more_drained, 0) / m["drain_rate"]
    predicted = last.seconds + more * 1.25
    if predicted > timeout:
        return (f"at its rates with {last.details['jobs']:,} jobs it would need about {predicted:,.0f}s, "
                f"over the {timeout:g}s timeout")  # fmt: skip
    return None


def progress(run: Run, reps: int, started: float) -> None:
    head = f"[{(time.monotonic() - started) / 60:5.1f} min] [rep {run.rep + 1}/{reps}] {run.system} {run.case}"
    if run.skipped:
        body = f"not run: {run.skipped}"
    elif run.error:
        body = f"ERROR {run.error}"
    else:
        body = "  ".join(f"{k}={v:,.2f}" for k, v in run.metrics.items())
    print(f"{head}: {body}  ({run.seconds:.1f}s)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a straight script of steps
    args = parse(argv)
    cases, systems, params = plan(args)
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        raise SystemExit("--reps: must be at least 1")
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 120.0)
    if timeout <= 0:
        raise SystemExit("--timeout: must be > 0 seconds")
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        raise SystemExit("--uvloop: uvloop is not installed (pip install -e '.[bench]')")
    loop = "uvloop" if args.uvloop else "asyncio"
    runs: list[Run] = []
    load_before = report.load_average()
    started = time.monotonic()
    with RedisServer() as server:
        print(f"redis-server on port {server.port}; {reps} repetition(s) of {', '.join(cases)} on "
              f"{', '.join(systems)}, {loop}", file=sys.stderr)  # fmt: skip
        with Redis.from_url(server.url) as r:
            for rep in range(reps):
                for case in cases:
                    for system in systems:  # alternate systems within each repetition
                        if not runs_workload(system, CASES[case][0]):
                            continue
                        why = skip_reason(runs, system, case, params[case], timeout)
                        if why:
                            run = Run(system, case, rep, 0.0, skipped=why)
                        else:
                            r.flushall()
                            run = run_one(system, case, rep, server.url, params[case], timeout, args.uvloop)
                        if CASES[case][0] == "scale":
                            run.details |= {"jobs": params[case]["jobs"], "workers_n": params[case]["workers"]}
                        runs.append(run)
                        progress(run, reps, started)
    load_after = report.load_average()
    print(report.table(runs, systems, cases, loop))
    # Only a standard run (every case and every system, default sizes) replaces the page's figures.
    standard = not (args.quick or args.only or args.set or args.systems) and systems == list(SYSTEMS)
    left_out = [s for s in SYSTEMS if s not in systems]
    if not standard and not args.quick and left_out and not (args.write or args.output):
        why = "left out by --systems" if args.systems else "not installed here (pip install -e '.[bench]')"
        print(f"systems {why}: {', '.join(left_out)}; docs/benchmarks.md left as it is", file=sys.stderr)
    output = args.output or (ROOT / "docs" / "benchmarks.md" if standard or args.write else None)
    if output is not None and not args.no_write:
        images = charts.draw(runs, systems, cases, output.parent / "img", loop)
        info = report.machine(systems, ROOT, (load_before, load_after), loop)
        page = Page(loop, report.argv_command(ROOT), reps, params, info,
                    [str(p.relative_to(output.parent)) for p in images], (time.monotonic() - started) / 60,
                    args.block)  # fmt: skip
        report.write_doc(output, report.results_block(runs, systems, cases, page), args.block or loop)
        print(f"results written to {output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([run.__dict__ for run in runs], indent=1))
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
