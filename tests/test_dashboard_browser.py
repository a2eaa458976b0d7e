"""The dashboard in a real headless Chromium (Debian's, driven by Playwright through its
executable path): every page opens, a failed job requeued from its row runs, a bulk requeue
runs the rest, a running job is cancelled, read-only mode refuses an action, the auth hook
refuses a request. The app is served by uvicorn in the test's event loop, beside a pool.

``AIOTASKQ_SCREENSHOTS=1`` also writes the main pages to docs/img/ (docs/dashboard.md)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _util import must, run_pool, wait_for, wait_status
from starlette.requests import Request

from aiotaskq import JobStatus, Queue, Task
from aiotaskq.web import create_app

playwright_api = pytest.importorskip("playwright.async_api")
uvicorn = pytest.importorskip("uvicorn")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
SHOTS = os.environ.get("AIOTASKQ_SCREENSHOTS") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app on a free loopback port, in this event loop, for the block."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        await wait_for(lambda: server.started, 10, "uvicorn to start")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await b.new_page(viewport={"width": 1280, "height": 860})
            page.on("dialog", lambda d: d.accept())  # the confirm() of destructive actions
            yield page
        finally:
            await b.close()


async def shot(page: Any, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(IMG / f"dashboard-{name}.png"), full_page=True)


def tasks(queue: Queue, runs: dict[str, int], started: anyio.Event) -> Task[[str], Any]:
    @queue.task(name="mail.send")
    async def send(to: str) -> str:
        runs[to] = runs.get(to, 0) + 1
        if runs[to] == 1:
            raise ConnectionError(f"SMTP server refused {to}")
        return f"sent to {to}"

    @queue.task(name="report.build")
    async def build(month: str) -> None:
        started.set()
        await anyio.sleep(60)

    @queue.task(name="thumb.make")
    async def thumb(n: int) -> int:
        await anyio.sleep(0.01)
        return n

    return send


async def test_the_dashboard_in_a_browser(queue: Queue) -> None:
    runs: dict[str, int] = {}
    started = anyio.Event()
    send = tasks(queue, runs, started)
    mails = [must(await send.enqueue(f"user{i}@example.com")) for i in range(3)]
    await queue.enqueue("thumb.make", args=(1,))
    for n in range(40):
        await queue.enqueue("thumb.make", args=(n,))
    await queue.enqueue("thumb.make", args=(99,), delay=3600, job_id="thumb-later")
    await queue.schedule("nightly-report", "report.build", cron="0 3 * * *", kwargs={"month": "current"})
    async with run_pool(queue, concurrency=4) as pool, served(create_app(queue, refresh=0.5)) as url, browser() as page:
        for m in mails:
            await wait_status(queue, m.id, JobStatus.FAILED)
        hang = must(await queue.enqueue("report.build", args=("2026-11",)))
        with anyio.fail_after(5):
            await started.wait()

        await page.goto(url + "/")
        await page.wait_for_selector(f'section[data-queue="{queue.name}"]')
        assert await page.inner_text(f'section[data-queue="{queue.name}"] td[data-status="failed"]') == "3"
        await shot(page, "overview")

        await page.click(f'section[data-queue="{queue.name}"] h2 a')
        await page.wait_for_selector("#pools")
        assert pool.pool_ids[0] in await page.inner_text("#pools")
        assert "median" in await page.inner_text("#latency")
        await shot(page, "queue")

        # the failed list: requeue one from its row; it runs, and the live page shows it gone
        await page.click('a[href$="/jobs/failed"]')
        await page.wait_for_selector(f'tr[data-id="{mails[0].id}"]')
        assert "ConnectionError: SMTP server refused" in await page.inner_text("#jobs")
        await shot(page, "failed")
        await page.click(f'tr[data-id="{mails[0].id}"] button:text("requeue")')
        await page.wait_for_selector(".done")
        assert await mails[0].result(timeout=5) == "sent to user0@example.com"
        await page.wait_for_selector(f'tr[data-id="{mails[0].id}"]', state="detached", timeout=5000)

        # bulk: requeue the two left, which run
        await page.click('.bulk button:text("requeue all 2")')
        await page.wait_for_selector(".done")
        assert "requeued 2 failed job(s)" in await page.inner_text(".done")
        assert [await m.result(timeout=5) for m in mails[1:]] == [f"sent to user{i}@example.com" for i in (1, 2)]

        # the running job: cancel it from the active list
        await page.goto(f"{url}/q/{queue.name}/jobs/active")
        await page.click(f'tr[data-id="{hang.id}"] button:text("cancel")')
        await wait_status(queue, hang.id, JobStatus.CANCELLED)

        # a job's page, the scheduled list, the schedules
        await page.goto(f"{url}/q/{queue.name}/job/{mails[0].id}")
        assert await page.inner_text('td[data-field="result"]') == '"sent to user0@example.com"'
        assert await page.inner_text('td[data-field="status"]') == "succeeded"
        await shot(page, "job")
        await page.goto(f"{url}/q/{queue.name}/jobs/scheduled")
        assert await page.is_visible('tr[data-id="thumb-later"]')
        await page.goto(f"{url}/q/{queue.name}/schedules")
        assert "nightly-report" in await page.inner_text("#schedules")
        await shot(page, "schedules")
        # the ended lists, one filtered by task, and the queued one
        await page.goto(f"{url}/q/{queue.name}/jobs/succeeded?task=mail.send")
        assert await page.locator("#jobs tr[data-id]").count() == 3
        assert all([await page.is_visible(f'tr[data-id="{m.id}"]') for m in mails])
        await page.goto(f"{url}/q/{queue.name}/jobs/cancelled")
        assert await page.is_visible(f'tr[data-id="{hang.id}"]')
        queued = await page.goto(f"{url}/q/{queue.name}/jobs/queued")
        assert queued is not None and queued.status == 200 and await page.is_visible("#jobs")
        await page.fill('input[name="id"]', "thumb-later")
        await page.press('input[name="id"]', "Enter")
        await page.wait_for_url("**/job/thumb-later")


async def test_read_only_and_the_auth_hook_in_a_browser(queue: Queue) -> None:
    await queue.enqueue("t.none", delay=3600, job_id="sched-1")

    def auth(request: Request) -> bool:
        return request.cookies.get("ops") == "yes"

    ro_app, guarded_app = create_app(queue, read_only=True), create_app(queue, auth=auth)
    async with served(ro_app) as ro, served(guarded_app) as guarded, browser() as page:
        await page.goto(f"{ro}/q/{queue.name}/jobs/scheduled")
        assert await page.is_visible('tr[data-id="sched-1"]')
        assert await page.locator("form[method=post]").count() == 0  # no action offered
        refused = await page.request.post(f"{ro}/q/{queue.name}/job-action/cancel?id=sched-1&csrf=x")
        assert refused.status == 403
        assert await queue.job("sched-1").status() is JobStatus.SCHEDULED

        denied = await page.goto(f"{guarded}/")
        assert denied is not None and denied.status == 403
        await page.context.add_cookies([{"name": "ops", "value": "yes", "url": guarded}])
        allowed = await page.goto(f"{guarded}/")
        assert allowed is not None and allowed.status == 200
