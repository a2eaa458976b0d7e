"""The dashboard's routes: pages rendered on the server (Jinja2), refreshed in place by a few
lines of JavaScript, and POST actions that redirect back. Every asset ships in the package.

Reads stay cheap on a queue of a million jobs: counts are O(1) script calls, lists are pages
(``Queue.job_ids`` with an offset, then one pipelined read of their records), the throughput
graph is one MGET per shard, and nothing scans a status unless a task filter asks for it (a
bounded scan, as in ``aiotaskq jobs --task``).
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _browse, _display
from .._admin import live_pools
from ..job import JobStatus
from ..queue import Queue

#: The auth hook: sees each request (pages, actions, assets); False refuses it (403).
Auth = Callable[[Request], bool | Awaitable[bool]]

HERE = Path(__file__).parent
PAGE = 50  # jobs per page
_LATENCY_SAMPLE = 200  # recent succeeded jobs the enqueue-to-start latency is taken from
_PAGE_SCAN = 2_000  # ids a page filtered by task looks at (about 80 ms): then it offers to look further
_BULK_SCAN = 100_000  # ids a filtered bulk action looks at, at most


def create_app(
    queues: Queue | Sequence[Queue],
    *,
    read_only: bool = False,
    auth: Auth | None = None,
    title: str = "aiotaskq",
    refresh: float = 2.0,
    metrics: bool = False,
) -> Starlette:
    """The dashboard over ``queues`` as an ASGI app (mount it at any path).

    ``read_only`` hides the actions and refuses them (403). ``auth`` is called with every
    request; a false answer refuses it (403): check a session, a header, a client address.
    Pages refresh their content in place every ``refresh`` seconds (0: never). ``metrics``
    serves the queues' Prometheus gauges at ``/metrics`` (needs the metrics extra).
    """
    dash = _Dashboard([queues] if isinstance(queues, Queue) else list(queues), read_only, title, refresh)
    q = "/q/{queue}"
    routes = [
        Route("/", dash.overview),
        Route("/search", dash.search),
        Route(q + "/", dash.queue_page),
        Route(q + "/jobs/{status}", dash.jobs_page),
        Route(q + "/job/{job_id:path}", dash.job_page),
        Route(q + "/schedules", dash.schedules_page),
        Route(q + "/rates", dash.rates),
        Route(q + "/job-action/{action}", dash.job_action, methods=["POST"]),
        Route(q + "/bulk/{action}", dash.bulk_action, methods=["POST"]),
        Route(q + "/unschedule", dash.unschedule, methods=["POST"]),
        Route(q + "/pause", dash.pause, methods=["POST"]),
        Route(q + "/resume", dash.pause, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if metrics:
        routes.append(Route("/metrics", _metrics_endpoint(list(dash.queues.values()))))
    app = Starlette(routes=routes)
    app.add_middleware(_Guard, auth=auth)
    return app


def _metrics_endpoint(queues: list[Queue]) -> Callable[[Request], Awaitable[Response]]:
    """``/metrics``: the queues' gauges (jobs per status, live pools), read afresh at each scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from ..metrics import Metrics

    registry = CollectorRegistry()
    watch = Metrics(registry)
    for q in queues:
        watch.instrument(q)

    async def endpoint(request: Request) -> Response:
        await watch.refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint


class _Guard:
    """Asks the auth hook about every request before the app sees it."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth is not None:
            allowed = self.auth(Request(scope))
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                await PlainTextResponse("forbidden", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Refused(Exception):
    pass


class _Dashboard:
    def __init__(self, queues: list[Queue], read_only: bool, title: str, refresh: float) -> None:
        if not queues:
            raise ValueError("queues: give at least one queue")
        self.queues = {q.name: q for q in queues}
        self.read_only, self.title, self.refresh = read_only, title, refresh
        self.token = secrets.token_urlsafe(16)  # in every action's URL: a page of another site cannot know it
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals.update(
            ago=_display.ago, age=_display.age, quote=quote, statuses=[s.value for s in JobStatus]
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _queue(self, request: Request) -> Queue:
        q = self.queues.get(request.path_params["queue"])
        if q is None:
            raise _NotFound(f"no queue {request.path_params['queue']!r} here")
        return q

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        base = request.scope.get("root_path", "")
        context.update(
            base=base, title=self.title, queues=list(self.queues), read_only=self.read_only,
            fragment=request.headers.get("x-fragment") == "1", now=time.time(),
            refresh_ms=round(self.refresh * 1000), action=lambda q, path, **p: self._action_url(base, q, path, **p),
            done=request.query_params.get("done"), quote=quote,
        )  # fmt: skip
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def _action_url(self, base: str, queue: str, path: str, **params: str) -> str:
        return f"{base}/q/{quote(queue)}/{path}?{urlencode({**params, 'csrf': self.token})}"

    def _check_action(self, request: Request) -> None:
        if self.read_only:
            raise _Refused("read-only dashboard: actions are off")
        if not secrets.compare_digest(request.query_params.get("csrf", ""), self.token):
            raise _Refused("this action did not come from the dashboard's own page")

    def _back(self, request: Request, fallback: str, done: str) -> Response:
        target = request.query_params.get("back") or fallback
        if not target.startswith("/"):  # only a path of ours
            target = fallback
        sep = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{sep}{urlencode({'done': done})}", status_code=303)

    # -- pages ----------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        rows = []
        for q in self.queues.values():
            counts = await q.counts()
            pools = await live_pools(q)
            rates = await _browse.rates(q, seconds=3600)
            rows.append({"name": q.name, "counts": {s.value: n for s, n in counts.items()}, "pools": len(pools),
                         "graph": svg_graph(rates, small=True), "per_s": _recent_rate(rates),
                         "paused": await q.paused()})  # fmt: skip
        return self._render(request, "overview.html", rows=rows)

    async def queue_page(self, request: Request) -> Response:
        return await _guarded(self, request, self._queue_page)

    async def _queue_page(self, request: Request, q: Queue) -> Response:
        counts = await q.counts()
        rates = await _browse.rates(q, seconds=3600)
        latency = await _latency(q)
        pools = await live_pools(q)
        counted = {s.value: n for s, n in counts.items()}
        return self._render(request, "queue.html", q=q, counts=counted, graph=svg_graph(rates),
                            per_s=_recent_rate(rates), latency=latency, pools=pools,
                            paused=await q.paused())  # fmt: skip

    async def jobs_page(self, request: Request) -> Response:
        return await _guarded(self, request, self._jobs_page)

    async def _jobs_page(self, request: Request, q: Queue) -> Response:
        try:
            status = JobStatus(request.path_params["status"])
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            raise _NotFound("no such status or page") from None
        task = request.query_params.get("task") or None
        page = await _browse.find(q, status, task=task, limit=PAGE, offset=offset, scan=_PAGE_SCAN)
        count = (await q.counts())[status]
        return self._render(request, "jobs.html", q=q, status=status.value, jobs=page.jobs, next=page.next,
                            offset=offset, task=task or "", count=count, page_size=PAGE,
                            scanned=page.scanned)  # fmt: skip

    async def job_page(self, request: Request) -> Response:
        return await _guarded(self, request, self._job_page)

    async def _job_page(self, request: Request, q: Queue) -> Response:
        job_id = request.path_params["job_id"]
        [info] = await _browse.infos(q, [job_id])
        if info is None:
            raise _NotFound(f"no job {job_id!r} on queue {q.name!r} (it never existed, or it ended and expired)")
        return self._render(request, "job.html", q=q, job=info, fields=_display.job_rows(info, time.time()))

    async def schedules_page(self, request: Request) -> Response:
        return await _guarded(self, request, self._schedules_page)

    async def _schedules_page(self, request: Request, q: Queue) -> Response:
        return self._render(request, "schedules.html", q=q, schedules=await q.schedules())

    async def search(self, request: Request) -> Response:
        job_id = request.query_params.get("id", "").strip()
        base = request.scope.get("root_path", "")
        if job_id:
            for q in self.queues.values():
                [info] = await _browse.infos(q, [job_id])
                if info is not None:
                    return RedirectResponse(f"{base}/q/{quote(q.name)}/job/{quote(job_id)}", status_code=303)
        return self._render(
            request,
            "message.html",
            status_code=404,
            message=f"no job {job_id!r} on {', '.join(self.queues)}" if job_id else "give a job id",
        )

    async def rates(self, request: Request) -> Response:
        q = self.queues.get(request.path_params["queue"])
        if q is None:
            return JSONResponse({"error": "no such queue"}, status_code=404)
        r = await _browse.rates(q, seconds=3600)
        return JSONResponse({"start": r.start, "slot_seconds": _browse.SLOT_SECONDS, "counts": r.counts})

    # -- actions --------------------------------------------------------------------------------

    async def job_action(self, request: Request) -> Response:
        return await _guarded(self, request, self._job_action, action=True)

    async def _job_action(self, request: Request, q: Queue) -> Response:
        action, job_id = request.path_params["action"], request.query_params.get("id", "")
        page = f"{request.scope.get('root_path', '')}/q/{quote(q.name)}/job/{quote(job_id)}"
        if action == "cancel":
            done = "cancelled" if await q.job(job_id).cancel() else "not cancelled: it has ended"
        elif action == "requeue":
            done = ("requeued" if await q.requeue_failed([job_id])
                    else "not requeued: it is not failed, or a parent it needs is still failed")  # fmt: skip
        elif action == "delete":
            done = "deleted" if await _browse.delete(q, [job_id]) else "not deleted: it has not ended"
            page = f"{request.scope.get('root_path', '')}/q/{quote(q.name)}/"
        else:
            raise _NotFound(f"no action {action!r}")
        return self._back(request, page, f"job {job_id}: {done}")

    async def bulk_action(self, request: Request) -> Response:
        return await _guarded(self, request, self._bulk_action, action=True)

    async def _bulk_action(self, request: Request, q: Queue) -> Response:
        action, task = request.path_params["action"], request.query_params.get("task") or None
        if action not in ("requeue", "delete"):
            raise _NotFound(f"no action {action!r}")
        if task is None:
            n = await (q.requeue_failed() if action == "requeue" else q.purge(JobStatus.FAILED))
        else:
            n = await _bulk_by_task(q, action, task)
        what = f" of task {task}" if task else ""
        base = request.scope.get("root_path", "")
        verb = "requeued" if action == "requeue" else "deleted"
        return self._back(request, f"{base}/q/{quote(q.name)}/jobs/failed", f"{verb} {n:,} failed job(s){what}")

    async def pause(self, request: Request) -> Response:
        return await _guarded(self, request, self._pause, action=True)

    async def _pause(self, request: Request, q: Queue) -> Response:
        pausing = request.url.path.endswith("/pause")
        changed = await (q.pause() if pausing else q.resume())
        done = ("paused" if pausing else "resumed") if changed else ("already paused" if pausing else "not paused")
        return self._back(request, f"{request.scope.get('root_path', '')}/q/{quote(q.name)}/", f"queue {done}")

    async def unschedule(self, request: Request) -> Response:
        return await _guarded(self, request, self._unschedule, action=True)

    async def _unschedule(self, request: Request, q: Queue) -> Response:
        key = request.query_params.get("key", "")
        done = f"schedule {key} removed" if await q.unschedule(key) else f"no schedule {key}"
        return self._back(request, f"{request.scope.get('root_path', '')}/q/{quote(q.name)}/schedules", done)


class _NotFound(Exception):
    pass


async def _guarded(
    dash: _Dashboard, request: Request, handler: Callable[[Request, Queue], Awaitable[Response]], *,
    action: bool = False,
) -> Response:  # fmt: skip
    """The page or action for the queue the path names; 404 and 403 as pages."""
    try:
        q = dash._queue(request)
        if action:
            dash._check_action(request)
        return await handler(request, q)
    except _NotFound as exc:
        return dash._render(request, "message.html", status_code=404, message=str(exc))
    except _Refused as exc:
        return dash._render(request, "message.html", status_code=403, message=str(exc))


async def _bulk_by_task(q: Queue, action: str, task: str) -> int:
    """Requeue or delete the failed jobs of one task: pages of matches from the start (the ones
    acted on leave the failed list), looking at ``_BULK_SCAN`` ids at most."""
    total = pos = scanned = 0
    while scanned < _BULK_SCAN:
        page = await _browse.find(q, JobStatus.FAILED, task=task, limit=1000, offset=pos, scan=_BULK_SCAN - scanned)
        ids = [j.id for j in page.jobs]
        n = await (q.requeue_failed(ids) if action == "requeue" else _browse.delete(q, ids)) if ids else 0
        total += n
        if page.next is None:
            return total
        scanned += page.scanned
        pos = page.next - n  # the jobs acted on left the failed list: the rest moved up
    return total


async def _latency(q: Queue) -> dict[str, float] | None:
    """Enqueue-to-start (due-to-start) seconds of the most recent succeeded jobs: median, p95, max."""
    ids = await q.job_ids(JobStatus.SUCCEEDED, limit=_LATENCY_SAMPLE)
    waits = sorted(
        (i.started_at - i.scheduled_at).total_seconds()
        for i in await _browse.infos(q, ids)
        if i is not None and i.started_at is not None and i.scheduled_at is not None
    )
    if not waits:
        return None
    return {"p50": waits[len(waits) // 2], "p95": waits[min(len(waits) - 1, round(len(waits) * 0.95))],
            "max": waits[-1], "n": len(waits)}  # fmt: skip


def _recent_rate(r: _browse.Rates) -> dict[str, float]:
    """Jobs per second over about the last minute (the last six 10 s slots)."""
    full = slice(-6, None)  # the slot in progress included: a minute, give or take its part
    return {c: sum(v[full]) / 60 for c, v in r.counts.items()}


def svg_graph(r: _browse.Rates, *, small: bool = False) -> Markup:
    """Succeeded and failed jobs per second over the hour, as an inline SVG (no script needed)."""
    w, h = (240, 40) if small else (720, 160)
    ok = [n / _browse.SLOT_SECONDS for n in r.counts.get("succeeded", [])]
    bad = [n / _browse.SLOT_SECONDS for n in r.counts.get("failed", [])]
    top = max([1.0, *ok, *bad])
    n = max(1, len(ok) - 1)

    def line(values: list[float], css: str) -> str:
        pts = " ".join(f"{i * w / n:.1f},{h - v * (h - 4) / top:.1f}" for i, v in enumerate(values))
        return f'<polyline class="{css}" fill="none" points="{pts}"/>'

    label = "" if small else (f'<text x="4" y="12">{top:,.1f}/s</text><text x="4" y="{h - 4}">0</text>'
                              f'<text x="{w - 4}" y="{h - 4}" text-anchor="end">now</text>'
                              f'<text x="{w / 2}" y="{h - 4}" text-anchor="middle">last hour</text>')  # fmt: skip
    desc = escape(f"succeeded {sum(ok) * _browse.SLOT_SECONDS:,.0f}, failed {sum(bad) * _browse.SLOT_SECONDS:,.0f}")
    return Markup(  # noqa: S704 - numbers computed here and an escaped label: nothing from a user unescaped
        f'<svg class="graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{desc}">'
        f"{line(ok, 'ok')}{line(bad, 'bad')}{label}</svg>"
    )
