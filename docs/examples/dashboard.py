"""The dashboard mounted in a FastAPI service, as docs/dashboard.md shows it; run it with
``uvicorn docs.examples.dashboard:app`` and open http://127.0.0.1:8000/admin/jobs/.

tests/test_dashboard.py imports ``app`` and calls it through httpx, against a real Redis.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request

from aiotaskq import Queue
from aiotaskq.web import create_app

queue = Queue("emails")


@queue.task
async def send(to: str) -> None: ...


def only_ops(request: Request) -> bool:
    """Who may see the dashboard: here, requests that a proxy in front marked as from ops
    (check your own session or login instead)."""
    return request.headers.get("x-role") == "ops"


app = FastAPI()
app.mount("/admin/jobs", create_app(queue, auth=only_ops))
