"""One repetition of one workload on one system, in a fresh process.

``python -m benchmarks.run --system S --workload W --url U --queue Q --params JSON [--uvloop]``

Prints one JSON line: ``{"metrics": {...}, "details": {...}}``, or ``{"error": "..."}``
with exit code 1. The caller runs this under a hard timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import web, workloads
from .adapter import System, load_system, run
from .measure import Context, Outcome

Workload = Callable[..., Awaitable[Outcome]]

WORKLOADS: dict[str, Workload] = {
    "latency": workloads.latency,
    "drain": workloads.drain,
    "io": workloads.io,
    "scale": workloads.scale,
    "retries": workloads.retries,
    "single": workloads.single,
    "http": web.http,
}


ROOT = Path(__file__).resolve().parent.parent


async def one(ctx: Context, workload: str, params: dict[str, Any]) -> Outcome:
    system: System = load_system(ctx.system)
    await system.open(ctx.url, ctx.queue)
    try:
        return await WORKLOADS[workload](ctx, system, **params)
    finally:
        await system.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run")
    p.add_argument("--system", required=True)
    p.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    p.add_argument("--url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--params", default="{}", help="keyword arguments of the workload, as JSON")
    p.add_argument("--uvloop", action="store_true", help="run on a uvloop event loop (the workers too)")
    args = p.parse_args(argv)
    ctx = Context(args.system, args.url, args.queue, ROOT, args.uvloop)
    try:
        out = run(one(ctx, args.workload, json.loads(args.params)), uvloop=args.uvloop)
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"metrics": out.metrics, "details": out.details}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
