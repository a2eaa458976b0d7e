"""Run 6, crash detection with the Pool's default settings (stale_timeout 30 s).

1. Kills: a job runs on one of two workers; its worker is SIGKILLed; the time from the kill
   to the job's second start, on the other worker, is measured (Redis clock), ``kills`` times,
   a fresh worker replacing the dead one each time. Before crash detection this was the
   whole stale_timeout (30 s plus up to a heartbeat).
2. False positives: a job blocks its worker's event loop for ``block_ms``; a pool reaches Redis
   through a proxy (proxy.py) that is cut for ``cut_for`` seconds while it runs a job: as a
   partition (nothing flows, both ends keep their connections, as in a real network cut), as
   the proxy's blackhole (its Redis-side connections dropped, as if Redis forgot the peer at
   once) and by resetting every connection (a proxy restarting). A pool reaped for the blocked
   loop or the partition is a false positive, and its job runs twice. The blackhole and the
   reset close the pool's connections on Redis's side, which is what a dead process does too:
   that pool is reaped, like a crashed one (reported; its outcome is fenced out).
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

import anyio

from aiotaskq import Job, JobStatus, Queue
from aiotaskq.testing import RedisServer

from . import app
from .harness import Context, Fleet, Result, Worker, fleet, pool_of, queue_name, redis_ms, runs, summary, wait_for
from .proxy import Mode, Proxy, parse_modes

TITLE = "Crash detection, default settings"
DEFAULTS: dict[str, Any] = {"kills": 10, "concurrency": 4, "blocks": 3, "block_ms": 2000, "cut_for": 10.0,
                            "modes": "partition,blackhole,reset", "timeout": 400.0}  # fmt: skip
QUICK: dict[str, Any] = {"kills": 2, "blocks": 1, "block_ms": 1000, "cut_for": 2.0, "timeout": 120.0}


def _flags(ctx: Context) -> list[str]:
    return ["--concurrency", str(ctx.params["concurrency"]), "--shutdown-timeout", "1"]


async def run(ctx: Context, result: Result) -> None:
    with RedisServer() as server:
        took = await _kills(ctx, result, server)
        reaped_blocked = await _blocks(ctx, result, server)
        cuts = {mode: await _cut(ctx, result, server, mode) for mode in parse_modes(str(ctx.params["modes"]))}
    result.headline = f"SIGKILL → rerun elsewhere {summary(took)} (min/median/max, {len(took)} kills)"
    result.figures["kill → rerun on the other worker"] = summary(took)
    if took:
        result.figures["kill → rerun, mean"] = f"{statistics.mean(took):.2f} s"
    result.figures[f"loop blocked {ctx.params['block_ms'] / 1000:g}s: pools reaped"] = str(reaped_blocked)
    for mode, reaped in cuts.items():
        result.figures[f"{ctx.params['cut_for']:g}s cut ({mode}): pool reaped"] = "yes" if reaped else "no"
    result.check("every kill's job ran again within 3 s", bool(took) and max(took) < 3.0)
    result.check("no pool reaped for a blocked loop", reaped_blocked == 0)
    if "partition" in cuts:
        result.check("no pool reaped for a partition", not cuts["partition"])


async def _started(q: Queue, n: int, times: int) -> bool:
    return len((await runs(q)).get(n, [])) >= times


async def _holder(q: Queue, f: Fleet, job_id: str) -> Worker:
    pool_id = (await q.job(job_id).info()).pool_id or ""
    [worker] = [w for w in f.alive() if pool_id.split(":")[-2:-1] == [str(w.pid)]]
    return worker


async def _registered(q: Queue, f: Fleet) -> None:
    async def all_idle() -> bool:
        for w in f.alive():
            pool_id = await pool_of(q, w.pid)
            if pool_id is None or await q.redis.zscore(q.keys.idle, pool_id) is None:
                return False
        return True

    await wait_for(all_idle, "every worker to register and go idle", 60)


async def _kills(ctx: Context, result: Result, server: RedisServer) -> list[float]:
    q = Queue(queue_name("crash"), url=server.url)
    tasks = app.register(q)
    took: list[float] = []
    jobs: list[Job] = []
    async with fleet(ctx, result, q.name, server.url) as f:
        for _ in range(2):
            f.start(server.url, _flags(ctx))
        for n in range(int(ctx.params["kills"])):
            await _registered(q, f)
            job = await tasks.stall_first.options(retries=3).enqueue(n, 600_000)
            assert job is not None
            jobs.append(job)
            await wait_for(partial(_started, q, n, 1), "the job to start", 30)
            victim = await _holder(q, f, job.id)
            killed_ms = await redis_ms(q.redis)
            victim.kill()
            await wait_for(partial(_started, q, n, 2), "the job to start again", 60)
            rerun_ms = max(ms for _, ms in (await runs(q))[n])
            took.append((rerun_ms - killed_ms) / 1000)
            ctx.say(f"kill {n + 1}: the job ran again {took[-1]:.2f}s after the kill")
            await job.result(timeout=30)
            f.start(server.url, _flags(ctx))
        result.jobs += len(jobs)
        result.lost = (result.lost or 0) + sum([await j.status() is not JobStatus.SUCCEEDED for j in jobs])
    result.duplicates = (result.duplicates or 0) + len(took)  # each killed attempt ran again: the bound
    result.duplicate_bound = (result.duplicate_bound or 0) + len(took)
    await q.close()
    return took


async def _blocks(ctx: Context, result: Result, server: RedisServer) -> int:
    q = Queue(queue_name("crash-block"), url=server.url)
    tasks = app.register(q)
    async with fleet(ctx, result, q.name, server.url) as f:
        for _ in range(2):
            f.start(server.url, _flags(ctx))
        for n in range(int(ctx.params["blocks"])):
            await _registered(q, f)
            job = await tasks.block_first.enqueue(n, int(ctx.params["block_ms"]))
            await job.result(timeout=60)
            started = len((await runs(q))[n])
            result.check(f"a blocked loop's job ran once (block {n + 1})", started == 1)
            result.jobs += 1
        reaped = sum(w.log_count("reaped") for w in f.workers)
    result.lost = result.lost or 0
    await q.close()
    return reaped


async def _cut(ctx: Context, result: Result, server: RedisServer, mode: Mode) -> bool:
    """Cut a pool (holding a job) off through the proxy; True when it was reaped."""
    q = Queue(queue_name(f"crash-cut-{mode}"), url=server.url)
    tasks = app.register(q)
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        async with fleet(ctx, result, q.name, server.url) as f:
            behind = f.start(proxy.url, _flags(ctx), name="behind")
            await _registered(q, f)
            pool_id = await pool_of(q, behind.pid)
            cut_ms = round(float(ctx.params["cut_for"]) * 1000)
            job = await tasks.stall_first.options(retries=3).enqueue(0, cut_ms + 3000)
            assert job is not None
            await wait_for(lambda: _started(q, 0, 1), "the job to start behind the proxy", 30)
            f.start(server.url, _flags(ctx), name="direct")
            await _registered(q, f)
            ctx.say(f"cutting the proxy ({mode}) for {cut_ms / 1000:g}s")
            t0 = time.monotonic()
            await proxy.cut(mode)
            await anyio.sleep(max(0.0, t0 + cut_ms / 1000 - time.monotonic()))  # the cut lasts this long
            await proxy.restore()
            await job.result(timeout=60)
            reaped = await q.redis.zscore(q.keys.pools, pool_id or "") is None  # it registered afresh
            started = len((await runs(q))[0])
            result.jobs += 1
            result.lost = result.lost or 0
            result.duplicates = (result.duplicates or 0) + started - 1
            result.duplicate_bound = (result.duplicate_bound or 0) + 1  # the one job the cut pool held
            if not reaped:
                result.check(f"a {mode} cut's job ran once", started == 1)
            ctx.say(f"{mode}: pool reaped: {reaped}, job started {started} time(s)")
    finally:
        await proxy.close()
        await q.close()
    return reaped
