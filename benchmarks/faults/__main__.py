"""``python -m benchmarks.faults``: the fault runs, each on private redis-server(s), bounded in time.

Prints a table and the figures of each run; a full default run (no ``--quick``, ``--only`` or
``--set``) also writes them into docs/reliability.md ("Measured under faults"). Exit code 0
when every run lost no job and passed its checks, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from . import crash, failover, kills, load, netcut, report, restart, skew
from .harness import Context, Result

RUNS: dict[str, ModuleType] = {
    "kills": kills,
    "restart": restart,
    "netcut": netcut,
    "load": load,
    "skew": skew,
    "crash": crash,
    "failover": failover,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run these only (repeat, or comma-separate): {', '.join(RUNS)}")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="small sizes and short faults (a smoke run, < 1 minute)")
    p.add_argument("--set", action="append", default=[], metavar="RUN.PARAM=VALUE",
                   help="override a size or setting, e.g. --set load.jobs=200000")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="random seed (job durations, kill victims)")
    p.add_argument("--json", type=Path, default=None, help="also write every result as JSON here")
    p.add_argument("--output", type=Path, default=None, help="page to write the figures to (default: "
                   "docs/reliability.md after a full default run)")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="print only; never write the docs page")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    chosen = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(RUNS)
    unknown = set(chosen) - set(RUNS)
    if unknown:
        raise SystemExit(f"--only: unknown run(s) {', '.join(sorted(unknown))}; known: {', '.join(RUNS)}")
    params = {n: RUNS[n].DEFAULTS | (RUNS[n].QUICK if args.quick else {}) for n in RUNS if n in chosen}
    for item in args.set:
        key, _, value = item.partition("=")
        name, _, param = key.partition(".")
        if name not in params or param not in params[name]:
            raise SystemExit(f"--set {item}: expected RUN.PARAM=VALUE with a run chosen and a known parameter")
        params[name][param] = type(params[name][param])(value)
    return params


async def run_one(name: str, ctx: Context) -> Result:
    module = RUNS[name]
    result = Result(name, module.TITLE)
    timeout = float(ctx.params["timeout"])
    print(f"[{name}] {module.TITLE} (bounded to {timeout:g}s)", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        with anyio.fail_after(timeout):
            await module.run(ctx, result)
    except TimeoutError:
        result.error = f"timed out after {timeout:g}s"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - t0
    state = "ok" if result.ok else f"FAILED{': ' + result.error if result.error else ''}"
    print(f"[{name}] {state}, lost {result.lost}, duplicates {result.duplicates} ({result.seconds:.1f}s)",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


async def main_async(args: argparse.Namespace, params: dict[str, dict[str, Any]]) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="aiotaskq-faults-") as tmp:
        for name, p in params.items():
            ctx = Context(Path(tmp), p, args.quick, random.Random(args.seed))
            results.append(await run_one(name, ctx))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    params = plan(args)
    results = anyio.run(main_async, args, params)
    print(report.table(results))
    print()
    print(report.details(results))
    standard = not (args.quick or args.only or args.set)
    output = args.output or (report.DOC if standard else None)
    if output is not None and not args.no_write:
        report.write_doc(output, report.block(results, argv))
        print(f"figures written to {output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) | {"ok": r.ok} for r in results], indent=1))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
