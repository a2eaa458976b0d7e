"""``make package-check``: the wheel and sdist ``python -m build`` makes install and run in a
fresh venv, with nothing of this checkout on the path.

1. Build both into a temporary directory.
2. The wheel holds what the package needs at run time: ``py.typed``, every Lua script, the
   dashboard's templates and static assets; the sdist holds the sources, tests and docs.
3. In a fresh venv (no site packages), install the wheel, and check ``aiotaskq --version``,
   the version of the metadata against ``aiotaskq.__version__``, and a real round trip: a
   private Redis (``aiotaskq.testing.RedisServer``), a job enqueued, ``aiotaskq worker`` in a
   subprocess, the result read back.
4. In another fresh venv, install the sdist (a build from source) and import it.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import textwrap
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ROUND_TRIP = textwrap.dedent("""
    import asyncio, os, subprocess, sys, tempfile, pathlib
    from importlib.metadata import version
    import aiotaskq
    from aiotaskq import Queue
    from aiotaskq.testing import RedisServer

    assert version("aiotaskq") == aiotaskq.__version__, (version("aiotaskq"), aiotaskq.__version__)
    assert "site-packages" in aiotaskq.__file__, aiotaskq.__file__  # the installed copy, not the checkout
    app = pathlib.Path(tempfile.mkdtemp()) / "pkgapp.py"
    app.write_text("from aiotaskq import Queue\\nqueue = Queue('pkg')\\n"
                   "@queue.task(name='add')\\nasync def add(a: int, b: int) -> int:\\n    return a + b\\n")

    async def main(url):
        q = Queue("pkg", url=url)
        job = await q.enqueue("add", args=(2, 3))
        env = {**os.environ, "AIOTASKQ_REDIS_URL": url, "PYTHONPATH": str(app.parent)}
        worker = subprocess.Popen([sys.executable, "-m", "aiotaskq", "worker", "pkgapp:queue"], env=env)
        try:
            print("result", await job.result(timeout=30))
        finally:
            worker.terminate()
            worker.wait(30)
            await q.close()

    with RedisServer() as server:
        asyncio.run(main(server.url))
""")


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(map(str, cmd))}\n{out.stdout}\n{out.stderr}")
    return out.stdout


def fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin" / "python"


def check_contents(wheel: Path, sdist: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    wanted = {"aiotaskq/py.typed", "aiotaskq/lua/_lib.lua", "aiotaskq/lua/claim.lua"}
    wanted |= {str(p.relative_to(ROOT)) for p in (ROOT / "aiotaskq" / "lua").glob("*.lua")}
    wanted |= {str(p.relative_to(ROOT)) for d in ("templates", "static") for p in (ROOT / "aiotaskq/web" / d).rglob("*")
               if p.is_file()}  # fmt: skip
    missing = wanted - names
    if missing:
        raise SystemExit(f"the wheel lacks {sorted(missing)}")
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    for need in ("aiotaskq/__init__.py", "aiotaskq/lua/claim.lua", "tests/conftest.py", "docs/quickstart.md",
                 "README.md", "CHANGELOG.md", "pyproject.toml"):  # fmt: skip
        if need not in members:
            raise SystemExit(f"the sdist lacks {need}")
    strays = sorted(m for m in members if m.split("/")[0] in (".hypothesis", ".venv", "site", ".git"))
    if strays:
        raise SystemExit(f"the sdist holds files that are not the project's: {strays[:5]}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aiotaskq-dist-") as tmp:
        out = Path(tmp)
        run(sys.executable, "-m", "build", "--outdir", out / "dist", ROOT)
        [wheel] = (out / "dist").glob("*.whl")
        [sdist] = (out / "dist").glob("*.tar.gz")
        check_contents(wheel, sdist)
        print(f"built {wheel.name} ({wheel.stat().st_size:,} bytes) and {sdist.name} ({sdist.stat().st_size:,} bytes)")

        py = fresh_venv(out / "wheel-venv")
        run(py, "-m", "pip", "install", "-q", wheel)
        print("aiotaskq --version:", run(py.parent / "aiotaskq", "--version").strip())
        result = run(py, "-c", ROUND_TRIP, cwd=out)
        if "result 5" not in result:
            raise SystemExit(f"the round trip did not give 5: {result}")
        print("wheel: a job enqueued and run by `aiotaskq worker` in a fresh venv: ok")

        py2 = fresh_venv(out / "sdist-venv")
        run(py2, "-m", "pip", "install", "-q", sdist)
        run(py2, "-c", "import aiotaskq, aiotaskq.testing; print(aiotaskq.__version__)", cwd=out)
        print("sdist: installs from source and imports: ok")


if __name__ == "__main__":
    main()
