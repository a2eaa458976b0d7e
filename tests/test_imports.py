"""The package's import graph: no cycle among the imports that run (module level and inside
functions), and none between a pool and its runners even for type checking. Type-only
back-references (``if TYPE_CHECKING:``) from job.py, task.py and schedule.py to Queue stay:
``Job.queue`` and ``Task.queue`` are public and typed as the Queue they belong to."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aiotaskq"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, typing_too: bool = False) -> set[str]:
    """The aiotaskq modules ``path`` imports: what runs, and with ``typing_too`` also what
    ``if TYPE_CHECKING:`` imports."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    skipped = set() if typing_too else _type_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) not in skipped:
            found |= {name for name in _targets(node, package) if name.startswith("aiotaskq") and _exists(name)}
    return found - {me}


def _type_only(tree: ast.AST) -> set[int]:
    """The nodes under an ``if TYPE_CHECKING:``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for child in node.body for n in ast.walk(child)}
    return out


def _targets(node: ast.AST, package: str) -> list[str]:
    """The modules an import statement names (``from . import x`` names ``package.x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if not node.level:
        return [node.module or ""]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    if node.module:
        return [f"{base}.{node.module}"]
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def _exists(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or (PACKAGE.parent / rel / "__init__.py").exists()


def graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    return {module_name(p): imports(p, typing_too=typing_too) for p in PACKAGE.rglob("*.py")}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once per entry point)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if nxt.startswith("aiotaskq.") and nxt.count(".") and nxt not in g:
                continue
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return found


def test_the_imports_that_run_have_no_cycle() -> None:
    g = {m: {i for i in deps if not i.endswith("__init__")} for m, deps in graph().items()}
    g = {m: deps - {"aiotaskq"} for m, deps in g.items()}  # the package's __init__ imports everything
    assert cycles(g) == []


def test_a_pool_and_its_runners_do_not_import_each_other_even_for_types() -> None:
    g = graph(typing_too=True)
    assert "aiotaskq._runner" in g["aiotaskq.pool"]
    assert "aiotaskq.pool" not in g["aiotaskq._runner"]
    assert "aiotaskq.pool" not in g["aiotaskq._presence"]


def test_the_graph_sees_imports() -> None:
    """The test above would pass on an empty graph: it does see the imports it judges."""
    g = graph()
    assert {"aiotaskq.job", "aiotaskq.task", "aiotaskq.schedule"} <= g["aiotaskq.queue"]
    assert "aiotaskq.queue" not in g["aiotaskq.schedule"]  # its PayloadTooLarge comes from errors.py now
    assert "aiotaskq.queue" in graph(typing_too=True)["aiotaskq.job"]  # the type-only back-reference, on purpose
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
