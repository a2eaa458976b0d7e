"""``aiotaskq worker --processes N`` and ``--reload`` (aiotaskq/_supervisor.py): children that
each run a pool, a crashed one restarted, SIGTERM forwarded for a graceful stop, and a restart
on a code change that loses no job."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from _util import must
from _workers import ROOT, marker_for, pool_ids, runs, wait_for, workers

from aiotaskq import Queue
from aiotaskq._supervisor import child_argv


def _pids(ids: list[str]) -> set[int]:
    return {int(i.split(":")[1]) for i in ids}


async def _pool_pids(queue: Queue) -> set[int]:
    return _pids(await pool_ids(queue))


def test_children_get_the_same_arguments_less_the_supervisors() -> None:
    argv = ["worker", "app:q", "--processes", "3", "--concurrency", "5", "--reload", "--processes=2",
            "--reload-dir", "src", "--reload-dir=lib"]  # fmt: skip
    assert child_argv(argv) == ["worker", "app:q", "--concurrency", "5"]


async def test_n_processes_a_crashed_one_restarted_and_sigterm_stops_all(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    with workers(queue, redis_url, tmp_path) as ws:
        sup = ws.start("--processes", "2")
        await wait_for(lambda: _count(queue, 2), "two worker processes to register their pools", 20)
        children = await _pool_pids(queue)
        assert sup.pid not in children and len(children) == 2
        jobs = [must(await queue.enqueue("fault.add", args=(i, 1))) for i in range(20)]
        assert [await j.result(timeout=10) for j in jobs] == [i + 1 for i in range(20)]
        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: _replaced(queue, victim, children), "the killed child to be replaced", 20)
        assert sup.alive()
        sup.signal(signal.SIGTERM)
        assert await sup.exited(20) == 0
        assert "restarting it in" in sup.log and "SIGKILL" in sup.log
    for pid in await _pool_pids(queue) | children:
        assert not _alive(pid)


async def test_a_child_whose_supervisor_was_killed_stops_gracefully(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL the supervisor: its child sees its parent go, finishes the job it runs and leaves
    (its pool deregistered), instead of serving the queue as an orphan."""
    with workers(queue, redis_url, tmp_path) as ws:
        sup = ws.start("--processes", "2")
        await wait_for(lambda: _count(queue, 2), "two worker processes to register their pools", 20)
        children = await _pool_pids(queue)
        try:
            job = must(await queue.enqueue("fault.stall_first", args=(marker_for(queue), 2.0)))
            await wait_for(lambda: _runs_once(queue, marker_for(queue)), "the job to start", 10)
            os.kill(sup.pid, signal.SIGKILL)
            info = await job.result(timeout=15)
            assert info["run"] == 1 and info["pid"] in children  # finished where it ran, not given back
            await wait_for(lambda: _count(queue, 0), "the orphaned children to deregister", 15)
            await wait_for(lambda: _all_gone(children), "the orphaned children to exit", 10)
        finally:  # (the workers block kills the supervisor only: never leave an orphan behind)
            for pid in children:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        assert f"the supervisor (pid {sup.pid}) is gone: stopping gracefully" in sup.log


async def _runs_once(queue: Queue, marker: str) -> bool:
    return await runs(queue, marker) == 1


async def _all_gone(pids: set[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


async def _count(queue: Queue, n: int) -> bool:
    return len(await pool_ids(queue)) == n


async def _replaced(queue: Queue, victim: int, before: set[int]) -> bool:
    now = await _pool_pids(queue)
    return victim not in now and len(now - before) == 1 and len(now) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("where", ["cwd", "reload-dir"])
async def test_reload_restarts_the_worker_on_a_code_change(
    queue: Queue, redis_url: str, tmp_path: Path, where: str
) -> None:
    """The app in the working directory, or in a --reload-dir elsewhere."""
    app_dir = tmp_path / "src"
    app_dir.mkdir()
    app = app_dir / "reloadapp.py"
    source = textwrap.dedent(f"""
        from aiotaskq import Queue

        queue = Queue({queue.name!r}, shards={queue.shards})


        @queue.task(name="version")
        async def version() -> str:
            return "v1"
    """)  # fmt: skip
    app.write_text(source)
    log = tmp_path / "reload.log"
    elsewhere = tmp_path / "run"  # not above src: only --reload-dir makes src watched
    elsewhere.mkdir()
    proc = _start_reloading(app_dir, redis_url, log, elsewhere if where == "reload-dir" else app_dir)
    try:
        await wait_for(lambda: _count(queue, 1), "the worker to register", 20)
        first = await _pool_pids(queue)
        assert await must(await queue.enqueue("version")).result(timeout=10) == "v1"
        app.write_text(source.replace('"v1"', '"v2"'))
        await wait_for(lambda: _moved_on(queue, first), "a restarted worker", 20)
        assert await must(await queue.enqueue("version")).result(timeout=10) == "v2"
        proc.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: proc.wait(20)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "changed: reloadapp.py" in text and "restarting the worker" in text


def _start_reloading(app_dir: Path, redis_url: str, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIOTASKQ_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(app_dir), str(ROOT)])}  # fmt: skip
    flags = ["--reload", "--poll-interval", "0.2"] + ([] if cwd == app_dir else ["--reload-dir", str(app_dir)])
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aiotaskq", "worker", "reloadapp:queue", *flags],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _moved_on(queue: Queue, before: set[int]) -> bool:
    now = await _pool_pids(queue)
    return len(now) == 1 and not now & before


def test_bad_flags_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aiotaskq", "worker", "tests.apps.faultapp:queue", "--processes", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT), "AIOTASKQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )  # fmt: skip
    assert out.returncode == 2 and "--processes: must be 1 or more" in out.stderr


@pytest.mark.parametrize(
    ("flags", "said"),
    [(["--reload-dir", "."], "--reload-dir: only with --reload"),
     (["--reload", "--reload-dir", "/no/such/dir"], "--reload-dir: not a directory: /no/such/dir")],
)  # fmt: skip
def test_bad_reload_dirs_exit_2(flags: list[str], said: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aiotaskq", "worker", "tests.apps.faultapp:queue", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT), "AIOTASKQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )  # fmt: skip
    assert out.returncode == 2 and said in out.stderr, out.stderr


def test_every_subcommand_has_examples_and_bash_completes_them() -> None:
    from aiotaskq.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert p.format_help().count(f"aiotaskq {name}") >= 1 and "examples:" in p.format_help(), name

    def complete(*words: str) -> list[str]:
        script = subprocess.run([sys.executable, "-m", "aiotaskq", "completion", "bash"], capture_output=True,
                                text=True, check=True, cwd=ROOT).stdout  # fmt: skip
        words_arr = " ".join(f"'{w}'" for w in ("aiotaskq", *words))
        probe = f'{script}\nCOMP_WORDS=({words_arr}); COMP_CWORD={len(words)}; _aiotaskq; echo "${{COMPREPLY[@]}}"'
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert complete("wor") == ["worker"]
    assert complete("worker", "--proc") == ["--processes"]
    assert "--all-failed" in complete("requeue", "--")
    fish = subprocess.run([sys.executable, "-m", "aiotaskq", "completion", "fish"], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout  # fmt: skip
    assert "__fish_seen_subcommand_from worker' -l reload" in fish
