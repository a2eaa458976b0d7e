"""``python -m benchmarks.dashboard``: how long each dashboard page takes on a queue of a
million waiting jobs (``--jobs``), on a private redis-server; medians of ``--reps`` requests,
through httpx's ASGI transport (the app and Redis, no HTTP server). ``--write`` puts the table
into docs/dashboard.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import time
from pathlib import Path

import anyio
import httpx

from aiotaskq import JobStatus, Pool, Queue
from aiotaskq.testing import RedisServer
from aiotaskq.web import create_app

DOC = Path(__file__).resolve().parent.parent / "docs" / "dashboard.md"
BEGIN, END = "<!-- pages:begin -->", "<!-- pages:end -->"


async def fill(q: Queue, jobs: int) -> None:
    """``jobs`` queued, a tenth of that scheduled; before them a tenth each failed and succeeded
    (run by a pool in this process), and 100 recurring schedules."""

    @q.task(name="mail.send")
    async def send(to: str) -> None: ...

    @q.task(name="report.build")
    async def build(n: int) -> None: ...

    @q.task(name="report.fail")
    async def fail(n: int) -> None:
        raise ValueError(f"report {n} failed")

    ended = jobs // 10
    for start in range(0, ended, 10_000):
        part = [(i,) for i in range(start, min(ended, start + 10_000))]
        await fail.enqueue_many(part)
        await build.enqueue_many(part)
    logging.getLogger("aiotaskq").setLevel(logging.CRITICAL)  # not 200,000 failure logs
    async with anyio.create_task_group() as tg:
        pool = Pool(q, concurrency=200)
        tg.start_soon(pool.run)
        while True:
            counts = await q.counts()
            if counts[JobStatus.FAILED] + counts[JobStatus.SUCCEEDED] >= 2 * ended:
                break
            await anyio.sleep(0.5)
        pool.stop()
    for i in range(100):
        await q.schedule(f"report-{i}", build, every=3600 + i, args=(i,))
    for start in range(0, jobs, 10_000):
        await send.enqueue_many([(f"user{i}@example.com",) for i in range(start, min(jobs, start + 10_000))])
    await build.options(delay=3600).enqueue_many([(i,) for i in range(jobs // 10)])


async def main(args: argparse.Namespace) -> str:
    with RedisServer() as server:
        q = Queue("bench-dashboard", url=server.url)
        t0 = time.perf_counter()
        await fill(q, args.jobs)
        filled = time.perf_counter() - t0
        pages = {
            "overview `/`": "/",
            "queue `/q/<q>/`": f"/q/{q.name}/",
            "queued, first page": f"/q/{q.name}/jobs/queued",
            f"queued, page at offset {args.jobs // 2:,}": f"/q/{q.name}/jobs/queued?offset={args.jobs // 2}",
            "scheduled, first page": f"/q/{q.name}/jobs/scheduled",
            "failed, first page": f"/q/{q.name}/jobs/failed",
            "failed, filtered by task (`report.fail`)": f"/q/{q.name}/jobs/failed?task=report.fail",
            "succeeded, first page": f"/q/{q.name}/jobs/succeeded",
            "running (active)": f"/q/{q.name}/jobs/active",
            "schedules (100)": f"/q/{q.name}/schedules",
            "search by job id": None,
            "a job's page": None,
            "queued, filtered by a task that has none there (`report.build`: 2,000 ids looked at, then a link)":
                f"/q/{q.name}/jobs/queued?task=report.build",
        }  # fmt: skip
        first = (await q.job_ids("queued", limit=1))[0]
        pages["a job's page"] = f"/q/{q.name}/job/{first}"
        pages["search by job id"] = f"/search?id={first}"
        rows = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(q)), base_url="http://d") as c:
            for name, path in pages.items():
                assert path is not None
                times = []
                for _ in range(args.reps):
                    t = time.perf_counter()
                    r = await c.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code in (200, 303), (path, r.status_code)
                rows.append((name, statistics.median(times)))
        await q.close()
    lines = [
        f"{args.jobs:,} queued and {args.jobs // 10:,} scheduled jobs, {args.jobs // 10:,} failed and as many "
        f"succeeded, 100 schedules, on a private redis-server (filled in "
        f"{filled:.0f} s); medians of {args.reps} requests, app and Redis on this repository's 2-core machine "
        "(`python -m benchmarks.dashboard`):",
        "",
        "| page | ms |",
        "|---|---:|",
        *(f"| {name} | {ms:.1f} |" for name, ms in rows),
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block")
    DOC.write_text(re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", f"{BEGIN}\n{text}\n{END}", doc, flags=re.DOTALL))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    ns = parser.parse_args()
    out = asyncio.run(main(ns))
    print(out)
    if ns.write:
        write(out)
