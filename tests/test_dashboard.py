"""The dashboard's app (aiotaskq.web) over a real Redis, through httpx's ASGI transport: every
page, every action, read-only mode, the auth hook, the action token, mounting under a path.
(tests/test_dashboard_browser.py drives the same pages in a real Chromium.)"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from _util import must, run_pool, wait_for, wait_status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from test_admin import cli
from test_shards import ids_on

from aiotaskq import JobStatus, Queue, current_job
from aiotaskq.web import create_app


def client(app: object, base: str = "http://dash") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)  # type: ignore[arg-type]


def action_urls(html: str) -> list[str]:
    return [u.replace("&amp;", "&") for u in re.findall(r'<form method="post" action="([^"]+)"', html)]


@pytest.fixture
async def failing(queue: Queue) -> AsyncIterator[Queue]:
    """The queue with 3 failed jobs of ``t.bad`` and 2 of ``t.worse``, 2 succeeded, 1 scheduled."""

    @queue.task(name="t.bad")
    async def bad(n: int) -> None:
        raise ValueError(f"bad {n}")

    @queue.task(name="t.worse")
    async def worse() -> None:
        raise KeyError("worse")

    @queue.task(name="t.good")
    async def good(n: int) -> int:
        return n

    jobs = [must(await bad.enqueue(n)) for n in range(3)] + [must(await worse.enqueue()) for _ in range(2)]
    oks = [must(await good.enqueue(n)) for n in range(2)]
    async with run_pool(queue):
        for j in jobs:
            await wait_status(queue, j.id, JobStatus.FAILED)
        for j in oks:
            await j.result(timeout=5)
    await good.options(delay=3600, job_id="later").enqueue(9)
    yield queue


async def test_every_page_answers_with_the_queue_s_figures(failing: Queue) -> None:
    q = failing
    async with client(create_app(q)) as c:
        home = await c.get("/")
        assert home.status_code == 200 and q.name in home.text and "<svg" in home.text
        page = await c.get(f"/q/{q.name}/")
        assert page.status_code == 200
        assert re.search(r'data-status="failed">5<', page.text) and re.search(r'data-status="succeeded">2<', page.text)
        assert 'id="latency">median' in page.text  # from the two succeeded jobs
        assert "succeeded 2, failed 5" in page.text  # the graph's label: this hour's counts
        failed = await c.get(f"/q/{q.name}/jobs/failed")
        assert failed.status_code == 200 and failed.text.count("<tr data-id=") == 5
        assert "ValueError: bad" in failed.text and "KeyError" in failed.text
        only_bad = await c.get(f"/q/{q.name}/jobs/failed", params={"task": "t.bad"})
        assert only_bad.text.count("<tr data-id=") == 3
        sched = await c.get(f"/q/{q.name}/jobs/scheduled")
        assert 'data-id="later"' in sched.text
        job = await c.get(f"/q/{q.name}/job/later")
        assert job.status_code == 200 and 'data-field="task">t.good<' in job.text and "[9]" in job.text
        fail_id = re.findall(r'<tr data-id="([^"]+)"', failed.text)[0]
        detail = await c.get(f"/q/{q.name}/job/{fail_id}")
        assert '<pre class="tb">' in detail.text and "Traceback" in detail.text
        rates = (await c.get(f"/q/{q.name}/rates")).json()
        assert sum(rates["counts"]["failed"]) == 5 and rates["slot_seconds"] == 10
        fragment = await c.get(f"/q/{q.name}/", headers={"X-Fragment": "1"})
        assert "<html" not in fragment.text and 'data-status="failed"' in fragment.text
        assert (await c.get("/static/app.js")).status_code == 200
        assert (await c.get("/q/nope/")).status_code == 404
        assert (await c.get(f"/q/{q.name}/jobs/lost")).status_code == 404
        assert (await c.get(f"/q/{q.name}/job/no-such")).status_code == 404
        found = await c.get("/search", params={"id": "later"})
        assert found.status_code == 303 and found.headers["location"] == f"/q/{q.name}/job/later"
        assert (await c.get("/search", params={"id": "nothing"})).status_code == 404


async def test_actions_requeue_cancel_delete_and_bulk(failing: Queue) -> None:
    q = failing
    async with client(create_app(q)) as c:
        page = await c.get(f"/q/{q.name}/jobs/failed", params={"task": "t.bad"})
        urls = action_urls(page.text)
        bulk = [u for u in urls if "/bulk/requeue" in u]
        assert len(bulk) == 1 and "task=t.bad" in bulk[0]
        done = await c.post(bulk[0])
        assert done.status_code == 303 and "requeued+3+failed" in done.headers["location"]
        assert (await q.counts())[JobStatus.FAILED] == 2 and (await q.counts())[JobStatus.QUEUED] == 3
        # one failed job: delete it from its row
        page = await c.get(f"/q/{q.name}/jobs/failed")
        delete = next(u for u in action_urls(page.text) if "job-action/delete" in u)
        assert (await c.post(delete)).status_code == 303
        assert (await q.counts())[JobStatus.FAILED] == 1
        # cancel the scheduled one from its page
        job_page = await c.get(f"/q/{q.name}/job/later")
        cancel = next(u for u in action_urls(job_page.text) if "job-action/cancel" in u)
        back = await c.post(cancel)
        assert back.status_code == 303 and "cancelled" in back.headers["location"]
        assert await q.job("later").status() is JobStatus.CANCELLED
        # bulk delete of every failed job left
        page = await c.get(f"/q/{q.name}/jobs/failed")
        delete_all = next(u for u in action_urls(page.text) if "/bulk/delete" in u and "task=" not in u)
        assert (await c.post(delete_all)).status_code == 303
        assert (await q.counts())[JobStatus.FAILED] == 0


async def test_a_requeued_job_runs_again(failing: Queue) -> None:
    q = failing
    async with client(create_app(q)) as c:
        page = await c.get(f"/q/{q.name}/jobs/failed", params={"task": "t.worse"})
        job_id = re.findall(r'<tr data-id="([^"]+)"', page.text)[0]
        detail = await c.get(f"/q/{q.name}/job/{job_id}")
        requeue = next(u for u in action_urls(detail.text) if "job-action/requeue" in u)
        assert (await c.post(requeue)).status_code == 303
    before = await q.job(job_id).info()
    assert before.status is JobStatus.QUEUED and before.finished_at is None
    async with run_pool(q):
        await wait_status(q, job_id, JobStatus.FAILED)  # it ran again (and failed again: KeyError)
    again = await q.job(job_id).info()
    assert again.finished_at is not None and again.attempts == 1  # fresh retries: a first attempt again


async def test_read_only_hides_and_refuses_actions(failing: Queue) -> None:
    q = failing
    async with client(create_app(q)) as rw:
        url = action_urls((await rw.get(f"/q/{q.name}/jobs/failed")).text)[0]
    async with client(create_app(q, read_only=True)) as c:
        page = await c.get(f"/q/{q.name}/jobs/failed")
        assert page.status_code == 200 and action_urls(page.text) == [] and "read-only" in page.text
        refused = await c.post(url.split("csrf=")[0] + "csrf=x")
        assert refused.status_code == 403 and "read-only dashboard: actions are off" in refused.text
    assert (await q.counts())[JobStatus.FAILED] == 5


async def test_an_action_needs_the_dashboard_s_token(failing: Queue) -> None:
    q = failing
    async with client(create_app(q)) as c:
        url = next(u for u in action_urls((await c.get(f"/q/{q.name}/jobs/failed")).text) if "/bulk/delete" in u)
        forged = re.sub(r"csrf=[^&]+", "csrf=guessed", url)
        refused = await c.post(forged)
        assert refused.status_code == 403 and "did not come from the dashboard&#39;s own page" in refused.text
        assert (await c.post(url.split("&csrf=")[0])).status_code == 403
        assert (await q.counts())[JobStatus.FAILED] == 5  # nothing happened
        assert (await c.get(url)).status_code == 405  # and never on a GET


async def test_the_auth_hook_sees_every_request(failing: Queue) -> None:
    seen: list[str] = []

    async def auth(request: Request) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-user") == "ops"

    async with client(create_app(failing, auth=auth)) as c:
        assert (await c.get("/")).status_code == 403
        assert (await c.get("/static/app.css")).status_code == 403
        assert (await c.get("/", headers={"x-user": "ops"})).status_code == 200
    assert seen == ["/", "/static/app.css", "/"]


async def test_mounted_under_a_path_every_link_keeps_it(failing: Queue) -> None:
    q = failing
    outer = Starlette(routes=[Mount("/admin/jobs", app=create_app(q))])
    async with client(outer) as c:
        page = await c.get(f"/admin/jobs/q/{q.name}/jobs/failed")
        assert page.status_code == 200
        links = re.findall(r'(?:href|action|src)="(/[^"]*)"', page.text)
        assert links and all(link.startswith("/admin/jobs/") for link in links), links
        assert (await c.post(action_urls(page.text)[0])).status_code == 303


def test_without_the_web_extra_the_import_names_it() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('starlette', 'jinja2'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import aiotaskq.web\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "pip install 'aiotaskq[web]'" in out.stderr


async def test_pages_stay_fast_with_many_jobs(queue: Queue) -> None:
    """Not a timing test (benchmarks/ measures): every page of the queue reads pages and counts,
    never a whole status, so its Redis calls stay the same from 2,000 to 20,000 waiting jobs."""

    @queue.task(name="t.any")
    async def anything() -> None:
        return None

    async def commands() -> int:  # ours: not a replica's REPLCONF (a cluster), nor this INFO
        stats = await queue.redis.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_replconf", "cmdstat_info"))

    async def calls(c: httpx.AsyncClient, path: str) -> int:
        before = await commands()
        assert (await c.get(path)).status_code == 200
        return await commands() - before

    pages = ["/", f"/q/{queue.name}/", f"/q/{queue.name}/jobs/queued", f"/q/{queue.name}/jobs/queued?offset=1500"]
    async with client(create_app(queue)) as c:
        for _ in range(2):
            await anything.enqueue_many([()] * 1000)
        small = {p: await calls(c, p) for p in pages}
        for _ in range(18):
            await anything.enqueue_many([()] * 1000)
        large = {p: await calls(c, p) for p in pages}
    assert (await queue.counts())[JobStatus.QUEUED] == 20_000
    assert large == small, (small, large)


async def test_the_dashboard_command_serves_the_queue_and_its_metrics(queue: Queue, redis_url: str) -> None:
    from test_cli import cli_env

    await queue.enqueue("t.any", job_id="seen-by-the-command")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "aiotaskq", "dashboard", "--queue", queue.name, "--url", redis_url,
           "--port", str(port), "--read-only"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=cli_env(url=redis_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:

            async def up() -> bool:
                try:
                    return (await c.get("/")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, 15, "the dashboard to answer")
            page = await c.get(f"/q/{queue.name}/jobs/queued")
            assert 'data-id="seen-by-the-command"' in page.text and "read-only" in page.text
            metrics = (await c.get("/metrics")).text
            assert f'aiotaskq_queue_jobs{{queue="{queue.name}",status="queued"}} 1.0' in metrics
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_docs_example_mounts_it_in_fastapi_behind_its_auth_hook(redis_url: str) -> None:
    from docs.examples import dashboard

    dashboard.queue.use_url(redis_url)
    try:
        await dashboard.send.enqueue("a@example.com")
        async with client(dashboard.app) as c:
            assert (await c.get("/admin/jobs/")).status_code == 403
            page = await c.get("/admin/jobs/q/emails/jobs/queued", headers={"x-role": "ops"})
            assert page.status_code == 200 and page.text.count("<tr data-id=") >= 1
            assert 'href="/admin/jobs/static/app.css"' in page.text
    finally:
        await dashboard.queue.purge(JobStatus.QUEUED)
        await dashboard.queue.close()


async def test_a_sharded_queue_is_one_queue_on_the_dashboard(redis_url: str) -> None:
    q = Queue(f"dash-sharded-{os.getpid()}", url=redis_url, shards=3)

    @q.task(name="t.bad")
    async def bad(n: int) -> None:
        raise ValueError(f"bad {n}")

    try:
        ids = [i for k in range(3) for i in ids_on(q, k, 3, stem=f"d{k}-")]  # three on each shard
        jobs = [must(await bad.options(job_id=i).enqueue(n)) for n, i in enumerate(ids)]
        async with run_pool(q):
            for j in jobs:
                await wait_status(q, j.id, JobStatus.FAILED)
        assert all([(await p.counts())[JobStatus.FAILED] for p in q.parts])  # spread over the shards
        async with client(create_app(q)) as c:
            page = await c.get(f"/q/{q.name}/jobs/failed")
            assert page.text.count("<tr data-id=") == 9 and re.search(r'data-status="failed">9<', page.text) is None
            home = await c.get(f"/q/{q.name}/")
            assert re.search(r'data-status="failed">9<', home.text) and "3 shards" in home.text
            for j in jobs[:2]:
                assert (await c.get(f"/q/{q.name}/job/{j.id}")).status_code == 200
            delete = next(u for u in action_urls(page.text) if "/bulk/delete" in u)
            assert (await c.post(delete)).status_code == 303
        assert (await q.counts())[JobStatus.FAILED] == 0
    finally:
        await q.close()


async def test_pause_and_resume_from_the_queue_page(queue: Queue) -> None:
    async with client(create_app(queue)) as c:
        page = await c.get(f"/q/{queue.name}/")
        [pause] = [u for u in action_urls(page.text) if f"/q/{queue.name}/pause?" in u]
        assert (await c.post(pause)).status_code == 303 and await queue.paused()
        page = await c.get(f"/q/{queue.name}/")
        assert 'id="paused"' in page.text
        [resume] = [u for u in action_urls(page.text) if "/resume?" in u]
        assert (await c.post(resume)).status_code == 303 and not await queue.paused()
    async with client(create_app(queue, read_only=True)) as c:
        assert (await c.post(pause.split("csrf=")[0] + "csrf=x")).status_code == 403
    assert not await queue.paused()


async def test_a_schedule_is_removed_from_the_schedules_page(queue: Queue) -> None:
    @queue.task(name="t.tick")
    async def tick() -> None:
        pass

    await queue.schedule("every-minute", tick, every=60)
    async with client(create_app(queue)) as c:
        page = await c.get(f"/q/{queue.name}/schedules")
        assert page.status_code == 200 and "every-minute" in page.text
        [remove] = [u for u in action_urls(page.text) if "/unschedule?" in u]
        back = await c.post(remove)
        assert back.status_code == 303 and "every-minute+removed" in back.headers["location"]
        assert "every-minute" not in (await c.get(f"/q/{queue.name}/schedules")).text
    assert [s.key for s in await queue.schedules()] == []


async def test_progress_shows_on_the_job_page_the_active_list_and_the_cli(queue: Queue, redis_url: str) -> None:
    reported, go_on = anyio.Event(), anyio.Event()

    @queue.task(name="t.long")
    async def long() -> None:
        await current_job().progress(0.5, note="5 of 10")
        reported.set()
        await go_on.wait()

    job = must(await long.enqueue())
    async with run_pool(queue), client(create_app(queue)) as c:
        with anyio.fail_after(5):
            await reported.wait()
        page = await c.get(f"/q/{queue.name}/job/{job.id}")
        assert 'data-field="progress">50% (5 of 10)<' in page.text
        active = await c.get(f"/q/{queue.name}/jobs/active")
        assert re.search(rf'<tr data-id="{re.escape(job.id)}">.*?50%', active.text, re.S)
        code, text, _ = await cli("job", "--queue", queue.name, "--url", redis_url, job.id, queue=queue, url=redis_url)
        assert code == 0 and re.search(r"^\s+progress\s+50% \(5 of 10\)$", text, re.M), text
        go_on.set()
        await job.result(timeout=5)
