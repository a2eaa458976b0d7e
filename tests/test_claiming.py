"""The claim loop's batching: a wave of jobs that end together is refilled by a split
claim, and a split claim that comes back short leaves the pool registered as idle."""

from __future__ import annotations

from typing import Any

import anyio
from _util import run_pool, wait_for

from aiotaskq import Queue
from aiotaskq._runner import _CHUNK


async def test_a_wave_is_refilled_by_a_split_claim_and_the_pool_then_registers_idle(queue: Queue) -> None:
    sizes: list[tuple[int, bool]] = []
    claim = queue.scripts.claim

    async def recording_claim(pool_id: str, want: int, *, register: bool = True, **kw: Any) -> list[Any]:
        sizes.append((want, register))
        return await claim(pool_id, want, register=register, **kw)

    queue.scripts.claim = recording_claim  # type: ignore[method-assign]  # records, then calls the real script
    ran: list[int] = []
    running = 0
    release = anyio.Event()

    @queue.task(name="wave")
    async def wave(i: int) -> None:
        nonlocal running
        running += 1
        await release.wait()  # the first wave ends together: all its jobs wake at once
        ran.append(i)

    n = 2 * _CHUNK  # concurrency
    await wave.enqueue_many([(i,) for i in range(n + _CHUNK)])  # a full wave, then half of one
    async with run_pool(queue, concurrency=n, poll_interval=5.0) as pool:
        await wait_for(lambda: running == n, what="a full wave running")
        await anyio.sleep(0.05)  # not a hope: the slots stay held, so the claim loop waits past _SPLIT_AFTER
        release.set()
        await wait_for(lambda: len(ran) == n + _CHUNK, what="both waves")
        # First wave: one call. Second: the wave ended together, so two calls, the first for
        # _CHUNK jobs; they came back short (half a wave was left), so one more call, which
        # registered the pool as idle.
        assert sizes[:3] == [(n, True), (_CHUNK, False), (n - _CHUNK, False)], sizes
        assert sizes[3][1], sizes
        runner = pool.runners[0]

        async def registered_idle() -> bool:
            return await queue.redis.zscore(queue.keys.idle, runner.pool_id) is not None

        await wait_for(registered_idle, timeout=2, what="the pool registered as idle")
        # Registered: a new job is handed over at once, though the pool polls every 5 s.
        late = await wave.enqueue(-1)
        with anyio.fail_after(2):
            await late.result()
    assert sorted(ran) == [-1, *range(n + _CHUNK)]  # each job ran once


async def test_a_claim_call_of_a_split_claim_leaves_the_idle_registration_alone(queue: Queue) -> None:
    s, k = queue.scripts, queue.keys
    await s.heartbeat("p", register=True, info="{}", ttl_ms=60_000)
    assert await s.claim("p", 5) == [0, -1, 0]  # nothing queued: registered with 5 free slots
    assert await queue.redis.zscore(k.idle, "p") == 5
    assert await s.claim("p", 3, register=False) == [0, -1, 0]  # short, but not registered anew
    assert await queue.redis.zscore(k.idle, "p") == 5
    await queue.redis.zrem(k.idle, "p")
    assert await s.claim("p", 3, register=False) == [0, -1, 0]
    assert await queue.redis.zscore(k.idle, "p") is None
    assert await s.claim("p", 3) == [0, -1, 0]
    assert await queue.redis.zscore(k.idle, "p") == 3
