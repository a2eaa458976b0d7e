"""The dashboard: an ASGI app over one or more queues, to serve with ``aiotaskq dashboard`` or to
mount in a FastAPI/Starlette service (docs/dashboard.md). It needs the ``web`` extra:
``pip install 'aiotaskq[web]'`` (Starlette and Jinja2; uvicorn for the command)."""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(f"aiotaskq.web needs the web extra: pip install 'aiotaskq[web]' ({exc})") from exc

from ._app import Auth, create_app

__all__ = ["Auth", "create_app"]
