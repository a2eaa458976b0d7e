"""Run 4, load: a million jobs enqueued by 4 producer tasks (``enqueue_many`` in chunks) while
2 worker processes drain them, on a queue that keeps results ``keep_result`` seconds.

Every job must succeed. Redis's memory is read (``INFO memory``) before, at the peak, at the
end, once the kept results have expired, and once one more job has ended (the ``succeeded``
zset is trimmed of expired entries only when a later job ends). The workers' memory (VmRSS)
is read when they are idle, after 10% of the jobs, and at the end: it must stay flat.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from redis.asyncio import Redis

from aiotaskq import Queue
from aiotaskq.testing import RedisServer

from . import app
from .harness import (
    Context,
    Fleet,
    Result,
    Worker,
    fleet,
    pending,
    pool_flags,
    queue_name,
    stats,
    wait_for,
    wait_registered,
)  # fmt: skip

TITLE = "Load (producers enqueue while 2 pools drain)"
DEFAULTS: dict[str, Any] = {
    "jobs": 1_000_000, "producers": 4, "chunk": 1_000, "workers": 2, "concurrency": 100, "keep": 5.0,
    "timeout": 900.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"jobs": 10_000, "keep": 1.0, "timeout": 60.0}
MiB = 1024 * 1024


async def memory(r: Redis) -> dict[str, int]:
    """used_memory and used_memory_rss, and the parts of MEMORY STATS that explain a difference."""
    info: dict[str, Any] = await r.info("memory")
    out = {k: int(info[k]) for k in ("used_memory", "used_memory_rss")}
    stats: dict[Any, Any] = await r.memory_stats()
    flat = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in stats.items()}
    db: dict[Any, Any] = flat.get("db.0") or {}
    db = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in db.items()}
    out["clients"] = int(flat.get("clients.normal", 0))
    out["lua"] = int(flat.get("lua.caches", 0))
    out["tables"] = int(db.get("overhead.hashtable.main", 0)) + int(db.get("overhead.hashtable.expires", 0))
    out["dataset"] = int(flat.get("dataset.bytes", 0))
    return out


async def run(ctx: Context, result: Result) -> None:
    with RedisServer() as server:
        q = Queue(queue_name("load"), url=server.url, keep_result=ctx.params["keep"])
        tasks = app.register(q)
        try:
            async with fleet(ctx, result, q.name, server.url, keep_result=ctx.params["keep"]) as f:
                await _run(ctx, result, q, tasks, f, server.url)
        finally:
            await q.close()


async def _run(ctx: Context, result: Result, q: Queue, tasks: app.Tasks, f: Fleet, url: str) -> None:
    p = ctx.params
    jobs, keep = int(p["jobs"]), float(p["keep"])
    result.jobs = jobs
    flags = pool_flags(concurrency=p["concurrency"], heartbeat=1.0, stale=10.0)
    workers = [f.start(url, flags) for _ in range(p["workers"])]
    await wait_registered(q, workers, 30)
    await anyio.sleep(0.5)
    base = await memory(q.redis)
    rss_idle = [w.rss_kb() for w in workers]
    ctx.say(f"{jobs:,} jobs by {p['producers']} producers; Redis at {base['used_memory'] / MiB:.1f} MiB")

    t0 = time.monotonic()
    marks: dict[str, Any] = {"peak": base["used_memory"], "enqueued_at": None, "rss_warm": None}
    async with anyio.create_task_group() as tg:
        tg.start_soon(_monitor, q, workers, jobs, marks, t0, ctx)
        async with anyio.create_task_group() as producers:
            share = -(-jobs // p["producers"])
            for i in range(p["producers"]):
                producers.start_soon(_produce, tasks, i * share, min(jobs, (i + 1) * share), int(p["chunk"]))
        marks["enqueued_at"] = time.monotonic() - t0
        ctx.say(f"all enqueued after {marks['enqueued_at']:.1f}s; draining")

        async def done() -> bool:
            return (await stats(q)).get("succeeded", 0) >= jobs

        await wait_for(done, f"{jobs:,} jobs to end", p["timeout"], step=0.2)
        tg.cancel_scope.cancel()
    drained_at = time.monotonic() - t0
    end = await memory(q.redis)
    rss_end = [w.rss_kb() for w in workers]
    s = await stats(q)
    runs = int(await q.redis.get(q.keys.prefix + app.LOAD_RUNS) or 0)
    left = await pending(q)

    expired_after = await _wait_expired(q, keep)
    await anyio.sleep(max(0.0, drained_at + keep + 1 - (time.monotonic() - t0)))  # every end is > keep old
    after_expiry = await memory(q.redis)
    zset_left = int(await q.redis.zcard(q.keys.succeeded))
    later = await tasks.noop.enqueue(jobs)  # one more job: its end trims the succeeded zset

    async def later_done() -> bool:
        return (await stats(q)).get("succeeded", 0) > jobs

    await wait_for(later_done, "one more job to end", 30)
    zset_after = int(await q.redis.zcard(q.keys.succeeded))
    job_keys = await _count_job_keys(q)
    await anyio.sleep(2)  # Redis shrinks its emptied keyspace hash tables in its cron
    after_later = await memory(q.redis)
    keys = await _keys(q)
    del later

    result.lost = jobs - min(jobs, s.get("succeeded", 0)) + left
    result.duplicates, result.duplicate_bound = runs - jobs, 0
    rate = jobs / drained_at
    warm = marks["rss_warm"] or rss_idle
    result.headline = (f"{rate:,.0f} jobs/s; Redis {base['used_memory'] / MiB:.1f} → peak "
                       f"{marks['peak'] / MiB:.0f} → {after_later['used_memory'] / MiB:.1f} MiB; worker RSS "
                       f"{_mib(warm)} → {_mib(rss_end)} MiB")  # fmt: skip
    result.figures.update({
        "setup": f"{jobs:,} fault.noop jobs, {p['producers']} producer tasks (enqueue_many, chunks of {p['chunk']:,}), "
                 f"{p['workers']} worker processes (concurrency {p['concurrency']}), keep_result {keep:g}s",
        "enqueue": f"{marks['enqueued_at']:.1f}s ({jobs / marks['enqueued_at']:,.0f} jobs/s, while draining)",
        "drain (first enqueue to last end)": f"{drained_at:.1f}s ({rate:,.0f} jobs/s)",
        "end states": f"succeeded {s.get('succeeded', 0):,}, failed {s.get('failed', 0):,}, still pending {left}",
        "task runs counted": f"{runs:,}",
        "Redis used_memory": f"baseline {base['used_memory'] / MiB:.2f} MiB; peak {marks['peak'] / MiB:.1f} MiB; "
                             f"at the end {end['used_memory'] / MiB:.1f} MiB; after keep_result expired "
                             f"{after_expiry['used_memory'] / MiB:.2f} MiB; after one more job ended "
                             f"{after_later['used_memory'] / MiB:.2f} MiB "
                             f"({(after_later['used_memory'] - base['used_memory']) / 1024:+.0f} KiB vs baseline)",
        "what the results took until then": f"job hashes gone {expired_after:.1f}s after the last end; "
                                            f"{zset_left:,} ids were left in the succeeded zset until one more job "
                                            "ended (it trims entries older than keep_result)",
        "keys left (the queue's own, after one more job)": keys,
        "the difference from the baseline, by MEMORY STATS": ", ".join(
            f"{label} {(after_later[k] - base[k]) / 1024:+.0f} KiB" for k, label in (
                ("dataset", "dataset"), ("clients", "client buffers"), ("tables", "keyspace hash tables"),
                ("lua", "Lua scripts"))),
        "Redis RSS (used_memory_rss)": f"baseline {base['used_memory_rss'] / MiB:.1f} MiB, at the end "
                                       f"{after_later['used_memory_rss'] / MiB:.1f} MiB (allocator pages not "
                                       "returned to the OS)",
        "worker RSS (VmRSS, per worker)": f"idle {_mib(rss_idle)} MiB; after 10% of the jobs {_mib(warm)} MiB; "
                                          f"at the end {_mib(rss_end)} MiB; peak (VmHWM) "
                                          f"{_mib(rss_end, 'VmHWM')} MiB",
    })  # fmt: skip
    result.check("every job succeeded", s.get("succeeded", 0) == jobs and s.get("failed", 0) == 0 and left == 0)
    result.check("each job ran once", runs == jobs)
    result.check("the kept results expired (no job hash left)", expired_after >= 0)
    result.check("after one more job, only it is left: 1 job hash, 1 id in the succeeded zset",
                 job_keys == 1 and zset_after == 1)  # fmt: skip
    slack = 2 * MiB + (marks["peak"] - base["used_memory"]) // 100
    result.check(f"Redis used_memory back to the baseline + {slack / MiB:.1f} MiB (2 MiB + 1% of the peak growth: "
                 "client buffers, hash tables Redis shrinks lazily)",
                 after_later["used_memory"] - base["used_memory"] <= slack)  # fmt: skip
    flat = all(e["VmRSS"] <= w["VmRSS"] * 1.1 + 8 * 1024 for e, w in zip(rss_end, warm, strict=True))
    result.check("worker RSS flat: at the end within 10% (+8 MiB) of the RSS after 10% of the jobs", flat)


async def _produce(tasks: app.Tasks, first: int, last: int, chunk: int) -> None:
    for start in range(first, last, chunk):
        await tasks.noop.enqueue_many([(n,) for n in range(start, min(last, start + chunk))])


async def _monitor(q: Queue, workers: list[Worker], jobs: int, marks: dict[str, Any], t0: float, ctx: Context
                   ) -> None:  # fmt: skip
    last_say = time.monotonic()
    while True:
        await anyio.sleep(0.5)
        m = await memory(q.redis)
        marks["peak"] = max(marks["peak"], m["used_memory"])
        done = (await stats(q)).get("succeeded", 0)
        if marks["rss_warm"] is None and done >= jobs // 10:
            marks["rss_warm"] = [w.rss_kb() for w in workers]
        if time.monotonic() - last_say >= 30:
            last_say = time.monotonic()
            ctx.say(f"{done:,} done after {last_say - t0:.0f}s; Redis {m['used_memory'] / MiB:.0f} MiB")


async def _wait_expired(q: Queue, keep: float) -> float:
    """Seconds after the last end until no job hash is left (-1 if some outlive keep_result + 30 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < keep + 30:
        if not await _count_job_keys(q, stop_at=1):
            return time.monotonic() - t0
        await anyio.sleep(0.5)
    return -1.0


async def _count_job_keys(q: Queue, stop_at: int | None = None) -> int:
    n = 0
    async for _ in q.redis.scan_iter(match=q.keys.prefix + "job:*", count=10_000):
        n += 1
        if stop_at is not None and n >= stop_at:
            break
    return n


async def _keys(q: Queue) -> str:
    out = []
    async for key in q.redis.scan_iter(match="*", count=1000):
        usage = await q.redis.memory_usage(key)
        out.append(f"{key.decode().removeprefix(q.keys.prefix)} ({usage} B)")
    return ", ".join(sorted(out))


def _mib(rss: list[dict[str, int]], key: str = "VmRSS") -> str:
    return " / ".join(f"{r[key] / 1024:.1f}" for r in rss)
