"""The source of each Lua script: its own file with the parts of ``lua/_lib.lua`` it uses.

Every call of a script runs the whole of its source's top level again: each ``local function``
of the library is a closure built anew, each table a new table. Prepending the whole library
cost every call ~13 µs of Redis CPU (a claim of one job, a heartbeat) once it held seventy
helpers. So the library is cut into its top-level statements, and a script gets only those it
reaches, by name, from its own body, in the library's order: what it runs is unchanged, what
it builds per call is what it needs.

The cut is by lines: a top-level statement starts at column 0 with ``local`` or with
``<name> = function`` (a forward-declared helper); everything up to the next one belongs to it
(its body, which Lua keeps indented, its closing ``end``, the comments after it). Names are
found after strings and comments are removed, so a comment that mentions a helper does not pull
it in; a name found in a string would only include more than needed.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Final

_START: Final = re.compile(r"^(?:local\s|[A-Za-z_]\w*\s*=\s*function\b)")
_DEFINES: Final = re.compile(
    r"^(?:local\s+function\s+(?P<fn>[A-Za-z_]\w*)"
    r"|local\s+(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)"
    r"|(?P<assigned>[A-Za-z_]\w*)\s*=\s*function\b)"
)
_STRINGS: Final = re.compile(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"")
_COMMENT: Final = re.compile(r"--.*$", re.MULTILINE)
_NAME: Final = re.compile(r"[A-Za-z_]\w*")


def _code_names(text: str) -> set[str]:
    return set(_NAME.findall(_COMMENT.sub("", _STRINGS.sub("''", text))))


def _chunks(lib: str) -> list[tuple[set[str], set[str], str]]:
    """The library's top-level statements: (names each defines, names it uses, its text). The
    text before the first statement (the header comment) defines nothing."""
    lines = lib.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _START.match(line)]
    out: list[tuple[set[str], set[str], str]] = []
    for k, i in enumerate(starts):
        text = "".join(lines[i : starts[k + 1] if k + 1 < len(starts) else len(lines)])
        m = _DEFINES.match(lines[i])
        assert m is not None  # _START matched
        defines = {m["fn"]} if m["fn"] else {m["assigned"]} if m["assigned"] else set(re.split(r"\s*,\s*", m["names"]))
        out.append((defines, _code_names(text) - defines, text))
    return out


def assemble(lib: str, body: str) -> str:
    """``body`` after the statements of ``lib`` it reaches (transitively), in ``lib``'s order."""
    chunks = _chunks(lib)
    by_name: dict[str, list[int]] = {}
    for n, (defines, _, _) in enumerate(chunks):
        for name in defines:
            by_name.setdefault(name, []).append(n)
    wanted: set[int] = set()
    todo = list(_code_names(body))
    while todo:
        for n in by_name.get(todo.pop(), ()):
            if n not in wanted:
                wanted.add(n)
                todo.extend(chunks[n][1])
    return "".join(chunks[n][2] for n in sorted(wanted)) + "\n" + body


@cache
def source(name: str) -> str:
    """The source of script ``name`` (``lua/<name>.lua``) with the library parts it uses."""
    lua = resources.files(__package__).joinpath("lua")
    return assemble(lua.joinpath("_lib.lua").read_text(), lua.joinpath(f"{name}.lua").read_text())
