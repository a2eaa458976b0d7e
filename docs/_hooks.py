"""MkDocs hook (mkdocs.yml ``hooks:``): a page's links to repository files outside docs/,
written ``../<path>`` so that they work where the Markdown is read in the repository, point
at the copies the site serves under ``src/<path>`` (the ``extrafiles`` plugin's list)."""

from __future__ import annotations

import re
from typing import Any

_UP = re.compile(r"\]\(\.\./(?!docs/)([^)#\s]+)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return _UP.sub(r"](src/\1", markdown)
