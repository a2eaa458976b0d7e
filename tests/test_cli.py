"""The command line, run as ``python -m aiotaskq`` subprocesses against a real Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest
from _util import wait_for

from aiotaskq import JobStatus, Pool, Queue
from aiotaskq.cli import main
from aiotaskq.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.apps.faultapp:queue"
FAST = ["--poll-interval", "0.2", "--heartbeat-interval", "0.3", "--stale-timeout", "1.5"]


def cli_env(queue_name: str = "faultapp", url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["FAULTAPP_QUEUE"] = queue_name
    env.pop("AIOTASKQ_REDIS_URL", None)
    if url is not None:
        env["AIOTASKQ_REDIS_URL"] = url
    return env


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(20):
        return await anyio.run_process([sys.executable, "-m", "aiotaskq", *args], cwd=ROOT, env=env, check=False)


def start_worker(log_path: Path, env: dict[str, str], *flags: str) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aiotaskq", "worker", APP, *FAST, *flags],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit code (the caller kills it in a finally if this times out)."""
    proc.send_signal(signal.SIGTERM)
    return await anyio.to_thread.run_sync(proc.wait, 20)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


# -- import paths that do not resolve -------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps.faultapp", "expected MODULE:ATTR"),
        ("tests.apps.nosuchmodule:queue", "module 'tests.apps.nosuchmodule' not found"),
        ("tests.apps.faultapp:nosuchattr", "module 'tests.apps.faultapp' has no attribute 'nosuchattr'"),
        ("tests.apps.faultapp:not_a_queue", "is of type int, not a Queue or a list of Queues"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "info"])
async def test_bad_target_is_a_clear_usage_error(command: str, target: str, message: str) -> None:
    out = await run_cli(command, target, env=cli_env())
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.startswith("aiotaskq: error: ")
    assert message in err
    assert "Traceback" not in err
    assert out.stdout == b""


async def test_module_that_fails_to_import_names_the_error(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("import no_such_dependency_xyz\n")
    env = cli_env()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    out = await run_cli("info", "broken_app:queue", env=env)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert "importing module 'broken_app' failed: ModuleNotFoundError" in err
    assert "no_such_dependency_xyz" in err
    assert "Traceback" not in err


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "no-colon-here"]) == 2
    assert "expected MODULE:ATTR" in capsys.readouterr().err
    assert main(["worker"]) == 2  # argparse: the target is missing
    assert "MODULE:ATTR" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "worker" in capsys.readouterr().out


async def test_invalid_pool_option_is_a_usage_error(redis_url: str) -> None:
    out = await run_cli("worker", APP, "--heartbeat-interval", "1", "--stale-timeout", "1", env=cli_env(url=redis_url))
    assert out.returncode == 2
    err = out.stderr.decode()
    assert "stale_timeout: must be more than twice heartbeat_interval" in err
    assert "Traceback" not in err


# -- info -----------------------------------------------------------------------------------------


async def test_info_prints_counts_and_live_pools(queue: Queue, redis_url: str) -> None:
    for _ in range(2):
        await queue.enqueue("fault.add", args=(1, 2), delay=3600)
    unknown = await queue.enqueue("fault.not-in-this-worker")
    assert unknown is not None
    pool = Pool(queue, poll_interval=0.2, heartbeat_interval=0.3, stale_timeout=1.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with pytest.raises(Exception, match="UnknownTask"):
            await unknown.result(timeout=5)  # the pool is up and has run a job
        as_json = await run_cli("info", APP, "--json", env=cli_env(queue.name, redis_url))
        as_text = await run_cli("info", APP, env=cli_env(queue.name, redis_url))
        pool.stop()

    assert as_json.returncode == 0, as_json.stderr
    [report] = json.loads(as_json.stdout)
    assert report["queue"] == queue.name
    assert report["url"] == redis_url
    assert report["counts"] == {"scheduled": 2, "queued": 0, "active": 0, "succeeded": 0, "failed": 1, "cancelled": 0}
    [live] = report["pools"]
    assert live["id"] == pool.pool_ids[0]
    assert 0 <= live["heartbeat_age"] < 1.5
    assert live["info"]["pid"] == os.getpid()
    assert live["info"]["concurrency"] == pool.concurrency

    assert as_text.returncode == 0, as_text.stderr
    text = as_text.stdout.decode()
    assert f"queue {queue.name!r} at {redis_url}" in text
    assert re.search(r"^\s+scheduled\s+2$", text, re.MULTILINE)
    assert re.search(r"^\s+failed\s+1$", text, re.MULTILINE)
    assert "live pools: 1" in text
    # Times as dates and ages: "heartbeat 0.3s ago  started 2026-12-01 22:10:03 UTC (1.2s ago)".
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    assert re.search(rf"{re.escape(pool.pool_ids[0])}\s+heartbeat \d+\.\ds ago  started {date} \(\d+\.\ds ago\)", text)
    assert "started=" not in text  # no raw epoch seconds
    assert live["heartbeat_at"].endswith("+00:00")  # JSON: ISO 8601 next to the age


async def test_info_when_redis_is_unreachable() -> None:
    with RedisServer() as server:
        url = server.url
    out = await run_cli("info", APP, "--url", url, env=cli_env())
    assert out.returncode == 1
    err = out.stderr.decode()
    assert f"could not read from Redis at {url}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["info", "schedules", "worker"])
@pytest.mark.parametrize("url", ["nope://localhost:6379/0", "redis://:secret-pw@localhost:notaport/0"])
async def test_an_unparsable_url_is_one_line_and_exit_2(command: str, url: str) -> None:
    out = await run_cli(command, APP, "--url", url, env=cli_env())
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.startswith("aiotaskq: error: invalid Redis URL ") and err.count("\n") == 1, err
    assert "(queue 'faultapp')" in err
    assert "secret-pw" not in err and "Traceback" not in err
    assert out.stdout == b""


@pytest.mark.parametrize("command", ["info", "schedules"])
async def test_an_unreachable_redis_is_one_line_and_exit_1(command: str) -> None:
    with RedisServer() as server:
        url = server.url
    out = await run_cli(command, APP, "--url", url, env=cli_env())
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.startswith(f"aiotaskq: error: could not read from Redis at {url}: ") and err.count("\n") == 1, err


async def test_schedules_prints_dates_and_ages(queue: Queue, redis_url: str) -> None:
    await queue.schedule("nightly", "fault.add", cron="0 3 * * *", args=(1, 2))
    out = await run_cli("schedules", APP, env=cli_env(queue.name, redis_url))
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    date = r"\d{4}-\d\d-\d\d 03:00:00 UTC"
    age = r"(\d+h \d+m|\d+h|\d+m \d+s|\d+m|\d+s|\d+\.\ds)"
    assert re.search(rf"^  nightly  fault\.add  .*  next {date} \(in {age}\)  never run$", text, re.MULTILINE), text


# -- worker ---------------------------------------------------------------------------------------


async def test_worker_runs_jobs_and_exits_0_on_sigterm(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    proc = start_worker(log_path, cli_env(queue.name, redis_url), "--concurrency", "3")
    try:
        job = await queue.enqueue("fault.add", args=(40, 2))
        assert job is not None
        assert await job.result(timeout=30) == 42  # a loaded 2-core box starts Python slowly
        raw: list[bytes] = await queue.redis.zrange(queue.keys.pools, 0, -1)  # type: ignore[assignment]
        [pool_id] = [x.decode() for x in raw]
        assert f":{proc.pid}:" in pool_id
        info = json.loads(await queue.redis.get(queue.keys.pool_info(pool_id)) or b"null")
        assert info["concurrency"] == 3
        assert await stop_worker(proc) == 0
    finally:
        kill(proc)
    assert await queue.redis.zcard(queue.keys.pools) == 0  # it left cleanly
    log = log_path.read_text()
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|ERROR|DEBUG)\s+aiotaskq: "
    assert re.search(line + r"pool \S+ serving queue", log, re.MULTILINE)
    assert re.search(line + "received SIGTERM: shutting down gracefully", log, re.MULTILINE)
    assert "pool stopped" in log
    assert "Traceback" not in log


async def test_worker_without_crash_detection_records_no_presence(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    """--no-crash-detection: the pool ticks (it stays alive for hand-offs) but records no connection,
    so no other pool can find it dead by one; a default worker records its connection."""
    plain = start_worker(tmp_path / "plain.log", cli_env(queue.name, redis_url))
    bare = start_worker(tmp_path / "bare.log", cli_env(queue.name, redis_url), "--no-crash-detection")
    try:
        ids: dict[int, str] = {}

        async def both_ticked() -> bool:
            raw: list[bytes] = await queue.redis.zrange(queue.keys.alive, 0, -1)  # type: ignore[assignment]
            for pool_id in (x.decode() for x in raw):
                ids[int(pool_id.split(":")[-2])] = pool_id
            return len(ids) == 2 and await queue.redis.hexists(queue.keys.presence, ids.get(plain.pid, "?"))

        await wait_for(both_ticked, 30, "both workers to tick")
        assert await queue.redis.hget(queue.keys.presence, ids[bare.pid]) is None
        assert await stop_worker(plain) == 0 and await stop_worker(bare) == 0
    finally:
        kill(plain)
        kill(bare)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), "uvloop"), (("--loop", "uvloop"), "uvloop"), (("--loop", "asyncio"), "asyncio.unix_events")],
)
async def test_worker_runs_on_uvloop_when_installed_or_on_the_loop_named(
    queue: Queue, redis_url: str, tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    """The dev dependencies install uvloop: the default (--loop auto) takes it, as --loop uvloop does."""
    pytest.importorskip("uvloop")
    log_path = tmp_path / "worker.log"
    proc = start_worker(log_path, cli_env(queue.name, redis_url), *flags)
    try:
        job = await queue.enqueue("fault.loop")
        assert job is not None
        assert await job.result(timeout=30) == expected
        assert await stop_worker(proc) == 0
    finally:
        kill(proc)
    named = "uvloop " if expected == "uvloop" else "asyncio\n"
    assert re.search(f"; event loop {named}", log_path.read_text()), log_path.read_text()


def without_uvloop(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with a ``uvloop`` package first on the path that fails to import, as if not installed."""
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('No module named uvloop')\n")
    env["PYTHONPATH"] = os.pathsep.join((str(tmp_path), env["PYTHONPATH"]))
    return env


async def test_worker_without_uvloop_runs_on_asyncio_by_default(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    proc = start_worker(log_path, without_uvloop(tmp_path, cli_env(queue.name, redis_url)))
    try:
        job = await queue.enqueue("fault.loop")
        assert job is not None
        assert await job.result(timeout=30) == "asyncio.unix_events"
        assert await stop_worker(proc) == 0
    finally:
        kill(proc)


async def test_worker_asked_for_a_missing_uvloop_is_a_usage_error(redis_url: str, tmp_path: Path) -> None:
    env = without_uvloop(tmp_path, cli_env("faultapp", redis_url))
    done = await run_cli("worker", APP, "--loop", "uvloop", env=env)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "aiotaskq: error: --loop uvloop: uvloop cannot be imported (No module named uvloop); "
        "pip install 'aiotaskq[uvloop]'"
    )


async def test_password_never_shown(tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    with RedisServer(password=password) as server:
        url = server.url
        name = f"secret-{uuid.uuid4().hex[:8]}"
        async with Queue(name, url=url) as q:
            job = await q.enqueue("fault.add", args=(1, 1))
            assert job is not None

            info = await run_cli("info", APP, "--json", env=cli_env(name, url))
            assert info.returncode == 0, info.stderr
            [report] = json.loads(info.stdout)
            assert report["counts"]["queued"] == 1
            assert report["url"] == f"redis://:***@127.0.0.1:{server.port}/0"
            text = await run_cli("info", APP, env=cli_env(name, url))
            bad_url = url.replace(password, wrong)
            denied = await run_cli("info", APP, "--url", bad_url, env=cli_env(name))
            assert denied.returncode == 1
            for out in (info, text, denied):
                _no_secret(out.stdout + out.stderr, password, wrong)

            # --url overrides the queue's own URL (here: the default, nothing listening).
            log_path = tmp_path / "worker.log"
            proc = start_worker(log_path, cli_env(name), "--url", url, "--log-level", "debug")
            try:
                assert await job.result(timeout=10) == 2
                assert await stop_worker(proc) == 0
            finally:
                kill(proc)
            log = log_path.read_text()
            assert f"redis://:***@127.0.0.1:{server.port}/0" in log
            _no_secret(log.encode(), password, wrong)

            # A wrong password: the worker keeps retrying, saying why, never showing it.
            log_path = tmp_path / "denied.log"
            proc = start_worker(log_path, cli_env(name), "--url", bad_url)
            try:
                deadline = time.monotonic() + 10
                while "retrying" not in log_path.read_text():
                    assert time.monotonic() < deadline, log_path.read_text()
                    await anyio.sleep(0.05)
                assert proc.poll() is None  # it does not give up
            finally:
                kill(proc)
            _no_secret(log_path.read_bytes(), password, wrong)
            assert (await q.counts())[JobStatus.SUCCEEDED] == 1


def _no_secret(output: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in output, output.decode(errors="replace")


# -- hooks from the queue's decorators --------------------------------------------------------------

HOOK_APP = "tests.apps.hookapp:queue"


def hook_env(queue_name: str, url: str) -> dict[str, str]:
    env = cli_env(queue_name, url)
    env["HOOKAPP_QUEUE"] = queue_name
    return env


def start_hook_worker(log_path: Path, env: dict[str, str], *flags: str) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aiotaskq", "worker", HOOK_APP, *FAST, *flags],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_worker_runs_the_queues_hooks_and_tasks_reach_their_resources(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    name = queue.name
    proc = start_hook_worker(tmp_path / "worker.log", hook_env(name, redis_url))
    try:
        key = queue.keys.prefix + "k"  # in the queue's slot: the client on_startup opened is the queue's kind
        job = await queue.enqueue("hook.uses_db", args=(key,))
        assert job is not None
        assert await job.result(timeout=30) == f"stored under {key}"
        assert await queue.redis.get(key) == job.id.encode()  # through the client on_startup opened
        assert await queue.redis.get(queue.keys.prefix + "started") == b"1"
        assert await queue.redis.get(queue.keys.prefix + "before") == b"1"
        assert await stop_worker(proc) == 0
    finally:
        kill(proc)
    assert await queue.redis.get(queue.keys.prefix + "stopped") == b"1"  # on_shutdown ran
    assert await queue.redis.lrange(queue.keys.prefix + "after", 0, -1) == [b"hook.uses_db:succeeded"]


async def test_worker_whose_startup_hook_fails_logs_it_and_exits_1(
    queue: Queue, redis_url: str, tmp_path: Path
) -> None:
    env = hook_env(queue.name, redis_url)
    env["HOOKAPP_FAIL_STARTUP"] = "1"
    log_path = tmp_path / "worker.log"
    proc = start_hook_worker(log_path, env)
    try:
        assert await anyio.to_thread.run_sync(proc.wait, 30) == 1
    finally:
        kill(proc)
    log = log_path.read_text()
    assert "ERROR   aiotaskq: the worker stopped on an error: RuntimeError: cannot reach the billing database" in log
    assert "in connect" in log  # the traceback of the hook
    assert await queue.redis.zcard(queue.keys.pools) == 0  # it left cleanly


async def test_worker_says_it_waits_for_a_plain_function_thread(queue: Queue, redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    proc = start_hook_worker(log_path, hook_env(queue.name, redis_url), "--shutdown-timeout", "0.2")
    try:
        job = await queue.enqueue("hook.stubborn", args=(3.0,))
        assert job is not None
        deadline = time.monotonic() + 30
        while await job.status() is not JobStatus.ACTIVE:
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
        assert await stop_worker(proc) == 0  # it exits once the function returns
    finally:
        kill(proc)
    log = log_path.read_text()
    assert "(hook.stubborn, a plain function)" in log
    assert f"job {job.id} (hook.stubborn) is a plain function: its thread cannot be interrupted" in log
    assert "WARNING aiotaskq: waiting for 1 thread(s) still running plain-function tasks" in log
    assert await job.status() is JobStatus.QUEUED  # handed back, uncharged


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (2.46, "2.5s"), (-3.0, "3.0s"), (42.4, "42s"), (60, "1m"), (185, "3m 5s"), (3600, "1h"),
     (7830, "2h 10m"), (86400 * 4 + 3 * 3600 + 59, "4d 3h")],
)  # fmt: skip
def test_ages_read_as_people_say_them(seconds: float, text: str) -> None:
    from aiotaskq._display import age

    assert age(seconds) == text
