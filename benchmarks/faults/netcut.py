"""Run 3, network cuts: two pools reach Redis through a proxy (``proxy.py``), one straight.

Mid-run the proxy is cut for longer than ``stale_timeout``, once by resetting every
connection (and refusing new ones), once as a blackhole (nothing flows, nothing is said).
The direct pool declares the cut pools dead and requeues their jobs; once the proxy is
restored the cut pools must find out, register afresh and claim again, by themselves. Jobs
record their runs straight to Redis, so a run on a cut pool is counted too: duplicates are
bounded by the jobs the cut pools held when the cut began.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

import aiotaskq
from aiotaskq import Queue
from aiotaskq._lua import source
from aiotaskq.testing import RedisServer

from . import app
from .harness import (
    Context,
    Fleet,
    Result,
    Worker,
    enqueue_work,
    fleet,
    held,
    pool_flags,
    pool_of,
    queue_name,
    redis_ms,
    runs,
    stats,
    statuses_text,
    summary,
    tally,
    wait_drained,
    wait_for,
    wait_registered,
)  # fmt: skip
from .proxy import Mode, Proxy, parse_modes

TITLE = "Network cuts (proxy reset, blackhole)"
DEFAULTS: dict[str, Any] = {
    "jobs": 8_000, "behind": 2, "concurrency": 5, "stale": 3.0, "heartbeat": 0.5, "cut_at": 0.25,
    "cut_for": 10.0, "one_way": 1.0, "recover": 30.0, "retries": 10, "max_ms": 50, "modes": "reset,blackhole",
    "timeout": 240.0,
}  # fmt: skip
QUICK: dict[str, Any] = {"jobs": 800, "concurrency": 3, "stale": 1.5, "heartbeat": 0.3, "cut_for": 2.5, "one_way": 0.5,
                         "recover": 15.0, "timeout": 60.0}  # fmt: skip


async def run(ctx: Context, result: Result) -> None:
    modes = parse_modes(str(ctx.params["modes"]), ("reset", "blackhole"))
    worst: list[str] = []
    with RedisServer() as server:
        for mode in modes:
            await _one_mode(ctx, result, server, mode)
            worst.append(f"{mode}: {result.figures.get(f'{mode}: headline', '?')}")
    result.headline = "; ".join(worst)


async def _one_mode(ctx: Context, result: Result, server: RedisServer, mode: Mode) -> None:
    q = Queue(queue_name(f"cut-{mode}"), url=server.url)
    tasks = app.register(q)
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        async with fleet(ctx, result, q.name, server.url) as f:
            await _run(ctx, result, q, tasks, f, server, proxy, mode)
    finally:
        await proxy.close()
        await q.close()


async def _run(ctx: Context, result: Result, q: Queue, tasks: app.Tasks, f: Fleet, server: RedisServer,
               proxy: Proxy, mode: Mode) -> None:  # fmt: skip
    p = ctx.params
    jobs = int(p["jobs"])
    result.jobs += jobs
    ids = await enqueue_work(q, tasks, ctx, jobs, retries=p["retries"], max_ms=p["max_ms"])
    flags = pool_flags(concurrency=p["concurrency"], heartbeat=p["heartbeat"], stale=p["stale"])
    behind = [f.start(proxy.url, flags, name=f"behind{i}") for i in range(p["behind"])]
    f.start(server.url, flags, name="direct")
    first_ids = await wait_registered(q, f.workers, 30)

    async def reached() -> bool:
        return (await stats(q)).get("succeeded", 0) >= float(p["cut_at"]) * jobs

    await wait_for(reached, "the cut point", p["timeout"])
    done_at_cut = (await stats(q)).get("succeeded", 0)
    ctx.say(f"{mode}: cutting {len(behind)} of 3 pools off for {p['cut_for']:g}s")
    t_cut = time.monotonic()
    await proxy.cut(mode, one_way=p["one_way"])
    await anyio.sleep(0.2)  # what was on the wire is gone; the cut pools' sets are frozen
    in_flight: set[str] = set()
    for w in behind:
        in_flight |= await held(q, first_ids[w.pid])
    reaped: dict[int, float] = {}
    async with anyio.create_task_group() as tg:
        for w in behind:
            tg.start_soon(_watch_reaped, q, first_ids[w.pid], t_cut, reaped, w.pid, p["cut_for"])
    await anyio.sleep(max(0.0, t_cut + p["cut_for"] - time.monotonic()))
    done_during = (await stats(q)).get("succeeded", 0) - done_at_cut
    await proxy.restore()
    t_restore = time.monotonic()
    restore_ms = await redis_ms(q.redis)
    ctx.say(f"{mode}: restored; waiting for the cut pools to come back")
    back = await _wait_back(q, behind, first_ids, t_restore, p["recover"])
    listening, t_listening = await _wait_subscribed(q, 1 + len(behind), t_restore + p["recover"])
    # More work once they are back, so that each comes-back pool surely has jobs left to claim.
    more = max(100, jobs // 10)
    ids += await enqueue_work(q, tasks, ctx, more, retries=p["retries"], max_ms=p["max_ms"], first=jobs)
    jobs += more
    result.jobs += more
    await wait_drained(q, jobs, p["timeout"])
    t = await tally(q, ids)
    started = await runs(q)
    ran_after = {pid for starts in started.values() for pid, ms in starts if ms > restore_ms}
    bound = len(in_flight)

    result.lost = (result.lost or 0) + t.lost
    result.duplicates = (result.duplicates or 0) + t.duplicates
    result.duplicate_bound = (result.duplicate_bound or 0) + bound
    recovered = [back[w.pid] for w in behind if w.pid in back]
    result.figures[f"{mode}: headline"] = (
        f"declared dead {summary(list(reaped.values()))}, back {summary(recovered)}" if len(recovered) == len(behind)
        else f"{len(behind) - len(recovered)} of {len(behind)} cut pools never came back"
    )  # fmt: skip
    result.figures[f"{mode}: setup"] = (
        f"{jobs - more:,} jobs, then {more:,} more once the cut pools are back; {len(behind)} pools behind the "
        f"proxy, 1 direct (concurrency {p['concurrency']}); "
        f"stale_timeout {p['stale']:g}s, heartbeat_interval {p['heartbeat']:g}s; cut {p['cut_for']:g}s"
    )  # fmt: skip
    result.figures[f"{mode}: cut pools declared dead after (min / median / max)"] = summary(list(reaped.values()))
    result.figures[f"{mode}: jobs ended during the cut (by the direct pool)"] = f"{done_during:,}"
    result.figures[f"{mode}: cut pools registered afresh after the restore (min / median / max)"] = (
        summary(recovered) + ("" if len(recovered) == len(behind) else f"; {len(behind) - len(recovered)} never")
    )  # fmt: skip
    result.figures[f"{mode}: every pool subscribed again (abort channel) after the restore"] = (
        f"{t_listening - t_restore:.2f}s" if listening == 1 + len(behind) else f"no: {listening} subscriber(s)"
    )
    result.figures[f"{mode}: end states"] = statuses_text(t.statuses)
    result.figures[f"{mode}: duplicate runs"] = f"{t.duplicates} (bound: {bound}, the jobs the cut pools held)"
    result.figures[f"{mode}: proxy"] = ", ".join(f"{k} {v}" for k, v in proxy.stats.items()) + (
        f"; still held silent at the end: {proxy.still_frozen}")  # fmt: skip
    if proxy.still_frozen:
        result.figures[f"{mode}: calls still waiting on a dead connection at the end"] = describe(
            proxy.frozen_requests()
        )
    result.check(f"{mode}: every job succeeded", t.statuses["succeeded"] == jobs)
    result.check(f"{mode}: the cut pools were declared dead and their jobs requeued", len(reaped) == len(behind))
    result.check(f"{mode}: duplicate runs ≤ jobs the cut pools held", t.duplicates <= bound)
    result.check(f"{mode}: every cut worker process is still running", all(w.alive() for w in behind))
    result.check(f"{mode}: every cut pool registered afresh by itself within {p['recover']:g}s",
                 len(recovered) == len(behind))  # fmt: skip
    result.check(f"{mode}: every cut pool ran jobs after the restore", all(w.pid in ran_after for w in behind))
    result.check(f"{mode}: every cut pool listens again (PUBSUB SHARDNUMSUB of the abort channel: {listening}, "
                 f"expected {1 + len(behind)})", listening == 1 + len(behind))  # fmt: skip
    for w in behind:
        if w.pid not in back:
            result.notes.append(f"{mode}: worker {w.name} (pid {w.pid}) did not come back; its log ends:\n"
                                f"{w.log_tail(12)}")  # fmt: skip


async def _watch_reaped(q: Queue, pool_id: str, t_cut: float, out: dict[int, float], pid: int, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while True:  # polled: the reap script publishes nothing when it removes a pool
            if await q.redis.zscore(q.keys.pools, pool_id) is None:
                out[pid] = time.monotonic() - t_cut
                return
            await anyio.sleep(0.02)


async def _wait_back(q: Queue, behind: list[Worker], first_ids: dict[int, str], t_restore: float, timeout: float
                     ) -> dict[int, float]:  # fmt: skip
    """Seconds from the restore until each cut worker's pool is registered under a new id."""
    back: dict[int, float] = {}

    async def all_back() -> bool:
        for w in behind:
            if w.pid not in back:
                pool_id = await pool_of(q, w.pid)
                if pool_id is not None and pool_id != first_ids[w.pid]:
                    back[w.pid] = time.monotonic() - t_restore
        return len(back) == len(behind)

    with contextlib.suppress(TimeoutError):
        await wait_for(all_back, "the cut pools to register afresh", timeout, step=0.02)
    return back


async def _wait_subscribed(q: Queue, expected: int, deadline: float) -> tuple[int, float]:
    """Pools subscribed to the queue's abort channel once it is ``expected`` or at the deadline, and
    when (a pool whose pub/sub connection hangs on a dead socket never hears a cancellation again)."""
    while True:
        _, n = await q.redis.execute_command("PUBSUB", "SHARDNUMSUB", q.keys.abort)  # type: ignore[no-untyped-call]
        if n >= expected or time.monotonic() >= deadline:
            return int(n), time.monotonic()
        await anyio.sleep(0.05)


def describe(requests: list[bytes]) -> str:
    """Name the Redis calls behind raw RESP requests: "EVALSHA heartbeat.lua x2, SUBSCRIBE x1"."""
    scripts = {
        hashlib.sha1(source(p.stem).encode()).hexdigest().encode(): p.name
        for p in (Path(aiotaskq.__file__).parent / "lua").glob("*.lua")
        if not p.stem.startswith("_")
    }
    names: Counter[str] = Counter()
    for raw in requests:
        parts = re.findall(rb"\$\d+\r\n([^\r]*)\r\n", raw)
        if not parts:
            names["(nothing sent: a reader only)"] += 1
            continue
        cmd = parts[0].decode(errors="replace").upper()
        if cmd == "EVALSHA" and len(parts) > 1:
            cmd += " " + scripts.get(parts[1], parts[1][:8].decode(errors="replace"))
        names[cmd] += 1
    return ", ".join(f"{name} x{n}" for name, n in names.most_common())
