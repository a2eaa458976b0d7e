"""Security: Redis AUTH (a password, and an ACL user limited to aiotaskq's keys, channels and
commands), TLS with certificates made in the test, passwords kept out of logs, errors and reprs,
no pickle or eval anywhere in the package, and only registered tasks run."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import pytest
from _util import FAST, must, run_pool, wait_for, wait_scored
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from aiotaskq import JobCancelled, JobFailed, JobStatus, Pool, Queue
from aiotaskq._url import redact_url
from aiotaskq.testing import RedisServer, find_server, free_port

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aiotaskq"
APP = "tests.apps.faultapp:queue"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def run_cli(*args: str, queue_name: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["FAULTAPP_QUEUE"] = queue_name
    env.pop("AIOTASKQ_REDIS_URL", None)
    with anyio.fail_after(20):
        return await anyio.run_process([sys.executable, "-m", "aiotaskq", *args], cwd=ROOT, env=env, check=False)


# -- the ACL user ---------------------------------------------------------------------------------------

# Commands the library sends itself (the rest of the ACL line is what its Lua scripts call).
CLIENT_COMMANDS = {
    "evalsha", "script|load",  # every state change
    "hget",  # Job.status / info / result: the job's record and active entry (in MULTI/EXEC)
    "hgetall",  # Queue.schedules
    "hset",  # a pool publishes its tasks' default retries
    "zrange", "zrevrange", "smembers",  # Queue.job_ids
    "mget",  # the throughput history (_browse.rates)
    "subscribe", "unsubscribe",  # the pub/sub listener (before Redis 7)
    "ssubscribe", "sunsubscribe",  # the pub/sub listener (shard channels, Redis 7 and later)
    "blpop", "rpush",  # an idle pool blocks on its inbox; a local timer ends the pop for a due job
    "get",  # Job.status / info / result: the ended record job:<id> (in MULTI/EXEC); aiotaskq info
    "time",  # aiotaskq info
    "ping",  # redis-py's health check
    "client|id", "client|list", "info",  # crash detection (aiotaskq/_presence.py)
    "multi", "exec",  # Job.status / info / result and Queue.schedules read their keys consistently
}  # fmt: skip


def documented_acl_line() -> str:
    """The ACL line of docs/security.md, exactly as users will copy it."""
    text = (ROOT / "docs" / "security.md").read_text()
    [line] = [x for x in text.splitlines() if x.startswith("user aiotaskq ")]
    return line


def acl_rules(password: str, line: str | None = None) -> list[str]:
    rules = (line or documented_acl_line()).split()[2:]
    assert ">CHANGE-ME" in rules
    return [f">{password}" if r == ">CHANGE-ME" else r for r in rules]


def script_commands() -> set[str]:
    calls = set()
    for path in (PACKAGE / "lua").glob("*.lua"):
        for cmd, sub in re.findall(r"redis\.call\(\s*'([A-Za-z]+)'(?:\s*,\s*'([A-Za-z]+)')?", path.read_text()):
            # a container command (PUBSUB NUMSUB) is allowed by its subcommand alone
            calls.add(f"{cmd}|{sub}".lower() if cmd.upper() == "PUBSUB" else cmd.lower())
    return calls


def test_acl_line_allows_exactly_what_the_library_calls() -> None:
    """Static half of the ACL check: a command added to a Lua script fails this test until the
    documented line allows it, and the line allows nothing that neither scripts nor client use."""
    allowed = {r[1:] for r in acl_rules("x") if r.startswith("+")}
    needed = script_commands() | CLIENT_COMMANDS
    assert script_commands(), "no redis.call found in aiotaskq/lua"
    assert needed - allowed == set(), "commands missing from the ACL line in docs/security.md"
    assert allowed - needed == set(), "commands in the ACL line that nothing uses"
    rules = acl_rules("x")
    assert {"~aiotaskq:*", "&aiotaskq:*", "-@all", "reset", "on"} <= set(rules)
    assert not [r for r in rules if r.startswith("+@") or r in ("allkeys", "allchannels", "allcommands", "nopass")]


@asynccontextmanager
async def acl_server(line: str | None = None) -> AsyncIterator[tuple[RedisServer, Redis, str]]:
    """A Redis whose default user needs a password, with the ``aiotaskq`` user created from the
    ACL line; yields (server, admin client, the aiotaskq user's URL)."""
    admin_pw, user_pw = unique("admin"), unique("user")
    with RedisServer(password=admin_pw) as server:
        admin = Redis.from_url(server.url)
        try:
            await admin.execute_command("ACL", "SETUSER", "aiotaskq", *acl_rules(user_pw, line))  # type: ignore[no-untyped-call]
            await admin.acl_log_reset()
            yield server, admin, f"redis://aiotaskq:{user_pw}@127.0.0.1:{server.port}/0"
        finally:
            await admin.aclose()


async def denials(admin: Redis) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = await admin.acl_log()
    return [e for e in entries if e.get("username") == "aiotaskq" and e.get("object") != "client|setinfo"]


async def test_acl_user_reaps_a_crashed_pool_fast_with_no_denial(caplog: pytest.LogCaptureFixture) -> None:
    """Crash detection (CLIENT ID, INFO, CLIENT LIST ID) runs as the documented user: a pool
    whose recorded connection is gone is reaped by the live pool's tick, and ACL LOG stays clean."""
    async with (
        acl_server() as (_, admin, url),
        Queue(unique("acl-crash"), url=url) as q,
        Queue(q.name, url=url) as ghost,
    ):
        ghost_id = int(await ghost.redis.client_id())
        run_id = (await ghost.redis.info("server"))["run_id"]
        await q.scripts.heartbeat("ghost", register=True, info="{}", ttl_ms=60_000, alive_ms=1)
        await q.redis.hset(q.keys.presence, "ghost", f"{run_id}:{ghost_id}")
        await ghost.close()  # the ghost's process "died": its connection is gone
        async with run_pool(q, stale_timeout=30.0):  # by heartbeat age alone: 30 s
            await wait_for(lambda: _gone(q, "ghost"), 5, "the ghost pool to be reaped")
        assert "crash detection is off" not in caplog.text
        assert await denials(admin) == []


async def _gone(q: Queue, pool_id: str) -> bool:
    return await q.redis.zscore(q.keys.pools, pool_id) is None


async def test_without_the_crash_detection_commands_a_pool_runs_jobs_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    line = " ".join(r for r in documented_acl_line().split() if r not in ("+client|id", "+client|list", "+info"))
    async with acl_server(line) as (_, _admin, url), Queue(unique("acl-nodetect"), url=url) as q:

        @q.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y

        with caplog.at_level(logging.WARNING, logger="aiotaskq"):
            async with run_pool(q) as pool:
                assert await (await add.enqueue(1, 2)).result(timeout=5) == 3
                await wait_for(lambda: not pool.runners[0].presence.detect, 5, "the pool to turn detection off")
                await wait_scored(q, q.keys.alive, pool.pool_ids[0], 2)  # two more ticks: still one warning
        assert caplog.text.count("crash detection is off") == 1
        assert await q.redis.zscore(q.keys.alive, pool.pool_ids[0]) is None  # left cleanly


async def test_acl_user_runs_the_whole_lifecycle() -> None:
    async with acl_server() as (_, admin, url):
        name = unique("acl")
        async with Queue(name, url=url) as q:
            started = anyio.Event()

            @q.task(name="fault.add")  # the CLI below loads faultapp, whose add has this name
            async def add(x: int, y: int) -> int:
                return x + y

            @q.task(name="hang")
            async def hang() -> None:
                started.set()
                await anyio.sleep(30)

            @q.task(name="boom")
            async def boom() -> None:
                raise ValueError("boom")

            first = await add.enqueue(1, 2)
            many = await add.enqueue_many([(i, i) for i in range(5)])
            later = must(await add.options(delay=60, job_id="later").enqueue(5, 5))
            failing = await boom.enqueue()
            assert await q.redis.ping() is True  # what redis-py's health check sends

            pool = Pool(q, concurrency=4, **FAST)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                assert await first.result(timeout=5) == 3
                assert [await must(j).result(timeout=5) for j in many] == [0, 2, 4, 6, 8]
                with pytest.raises(JobFailed, match="boom"):
                    await failing.result(timeout=5)

                running = await hang.enqueue()
                with anyio.fail_after(5):
                    await started.wait()
                assert await q.job_ids(JobStatus.ACTIVE) == [running.id]
                assert await running.cancel() is True  # reaches the pool over the abort channel
                with pytest.raises(JobCancelled):
                    await running.result(timeout=5)

                assert await q.job_ids(JobStatus.SCHEDULED) == ["later"]
                assert await later.reschedule() is True
                assert await later.result(timeout=5) == 10
                parked = must(await add.options(delay=60).enqueue(0, 0))

                assert await q.counts() == {
                    JobStatus.SCHEDULED: 1, JobStatus.QUEUED: 0, JobStatus.ACTIVE: 0,
                    JobStatus.SUCCEEDED: 7, JobStatus.FAILED: 1, JobStatus.CANCELLED: 1,
                }  # fmt: skip
                assert await q.job_ids(JobStatus.FAILED) == [failing.id]
                assert await q.job_ids(JobStatus.CANCELLED) == [running.id]
                assert len(await q.job_ids(JobStatus.SUCCEEDED)) == 7
                assert await q.job_ids(JobStatus.QUEUED) == []

                assert await q.requeue_failed() == 1
                with pytest.raises(JobFailed, match="boom"):
                    await failing.result(timeout=5)
                assert (await failing.info()).attempts == 1

                info = await run_cli("info", APP, "--json", "--url", url, queue_name=name)
                pool.stop()

            assert info.returncode == 0, info.stderr
            [report] = json.loads(info.stdout)
            assert report["counts"]["succeeded"] == 7 and report["counts"]["scheduled"] == 1
            assert [p["id"] for p in report["pools"]] == pool.pool_ids
            assert report["url"] == f"redis://aiotaskq:***@127.0.0.1:{url.rsplit(':', 1)[1]}"

            assert await q.purge(JobStatus.SUCCEEDED) == 7
            assert await q.purge(JobStatus.SCHEDULED) == 1
            assert await q.purge(JobStatus.FAILED) == 1
            assert await q.purge(JobStatus.CANCELLED) == 1
            with pytest.raises(LookupError):
                await parked.status()

            # Recurring schedules work under the same user: upsert, list, fire, remove.
            await q.schedule("acl-every", add, every=timedelta(seconds=1), args=(20, 22))
            assert [s.key for s in await q.schedules()] == ["acl-every"]
            async with anyio.create_task_group() as tg:
                pool = Pool(q, concurrency=2, **FAST)
                tg.start_soon(pool.run)
                await wait_for(lambda: _has_ticked(q), 5, "the schedule's first tick")
                tick = q.job((await q.schedules())[0].last_job_id or "")
                assert await tick.result(timeout=5) == 42
                pool.stop()
            assert await q.unschedule("acl-every") is True
            assert await q.schedules() == []
        assert await denials(admin) == []  # nothing the library did was refused

        # ... and the user can do nothing else.
        async with Redis.from_url(url) as r:
            refused: list[Callable[[], Awaitable[Any]]] = [
                lambda: r.set("elsewhere", 1),
                lambda: r.get("elsewhere"),
                lambda: r.keys("*"),
                lambda: r.flushall(),
                lambda: r.config_get("*"),
                lambda: r.eval("return 1", 0),
                lambda: r.publish("elsewhere", "x"),
                lambda: r.execute_command("ACL", "WHOAMI"),  # type: ignore[no-untyped-call]
            ]
            for call in refused:
                with pytest.raises(NoPermissionError):
                    await call()
            # A script of its own runs under the same ACL: no way around the key patterns.
            with pytest.raises(NoPermissionError):
                await r.register_script("return redis.call('GET', KEYS[1])")(keys=["elsewhere"])


async def test_acl_user_limited_to_one_queue() -> None:
    name = unique("only")
    line = documented_acl_line().replace("~aiotaskq:*", f"~aiotaskq:{{{name}}}:*")
    line = line.replace("&aiotaskq:*", f"&aiotaskq:{{{name}}}:*")
    async with acl_server(line) as (_, admin, url):
        async with Queue(name, url=url) as q, Queue(name + "x", url=url) as other:

            @q.task(name="add")
            async def add(x: int, y: int) -> int:
                return x + y

            async with run_pool(q):
                assert await (await add.enqueue(2, 3)).result(timeout=5) == 5
            with pytest.raises(NoPermissionError):
                await other.enqueue("add", args=(1, 1))
            with pytest.raises(NoPermissionError):
                await other.counts()
        refused = await denials(admin)
        assert [(e["reason"], e["object"].split("}")[0]) for e in refused] == [("key", "aiotaskq:{" + other.name)] * 2


# -- a password (requirepass) and redaction ------------------------------------------------------------


@pytest.fixture(scope="module")
def password() -> str:
    return f"p@ss:w/rd%-{uuid.uuid4().hex}"  # needs percent-encoding in a URL


@pytest.fixture(scope="module")
def auth_server(password: str) -> Iterator[RedisServer]:
    with RedisServer(password=password) as server:
        yield server


def auth_url(server: RedisServer, password: str) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"


def assert_no_secret(text: str, password: str) -> None:
    for form in {password, quote(password, safe=""), quote(password)}:
        assert form not in text, text


@pytest.mark.parametrize("form", ["userinfo", "query"])
async def test_password_auth_works_and_never_shows(
    auth_server: RedisServer, password: str, caplog: pytest.LogCaptureFixture, form: str
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    url = auth_url(auth_server, password)
    shown_url = f"redis://:***@127.0.0.1:{auth_server.port}/0"
    if form == "query":  # redis-py also takes ?password=
        url = f"redis://127.0.0.1:{auth_server.port}/0?{urlencode({'password': password, 'db': 0})}"
        shown_url = f"redis://127.0.0.1:{auth_server.port}/0?password=***&db=0"
    async with Queue(unique("auth"), url=url) as q:

        @q.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y

        async with run_pool(q):
            assert await (await add.enqueue(20, 22)).result(timeout=5) == 42
        assert q.url == shown_url
        assert repr(q) == f"<Queue {q.name!r} at {shown_url}>"
        shown = [q.url, repr(q), str(q), repr(q.redis), str(q.redis), repr(q.redis.connection_pool)]
        assert any(f"{auth_server.port}" in s for s in shown)
        assert_no_secret("\n".join(shown), password)
    assert any("serving queue" in r.getMessage() for r in caplog.records)
    assert_no_secret(caplog.text + "\n".join(r.getMessage() for r in caplog.records), password)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:s3cret@h/0", "redis://:***@h/0"),
        ("redis://jobs:s3cret@h/0", "redis://jobs:***@h/0"),
        ("redis://jobs:p%40ss@h/0", "redis://jobs:***@h/0"),
        ("redis://h/0?password=s3cret&db=1", "redis://h/0?password=***&db=1"),
        ("rediss://h/0?ssl_keyfile=/k&ssl_password=s3cret", "rediss://h/0?ssl_keyfile=/k&ssl_password=***"),
        ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
        ("redis://[::1/0?password=s3cret", "<unparsable url>"),
    ],
)
def test_redacted_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert Queue("q", url=url).url == shown


async def test_auth_failures_raise_errors_without_the_password(
    auth_server: RedisServer, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = auth_url(auth_server, password)
    wrong = good.replace(quote(password, safe=""), quote(password[::-1], safe=""))
    nothing_there = good.replace(f":{auth_server.port}/", f":{free_port()}/")
    no_password = f"redis://127.0.0.1:{auth_server.port}/0"
    cases: list[tuple[str, type[RedisError]]] = [
        (wrong, AuthenticationError),
        (nothing_there, RedisConnectionError),
        (no_password, AuthenticationError),  # "Authentication required." on the first command
    ]
    for url, kind in cases:
        async with Queue(unique("denied"), url=url) as q:
            with anyio.fail_after(10), pytest.raises(kind) as caught:
                await q.enqueue("any.task")
            text = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(q)
            assert_no_secret(text, password)
            assert_no_secret(text, password[::-1])

    # A pool that cannot log in keeps retrying, and says why without the password.
    async with Queue(unique("denied-pool"), url=wrong) as q:
        pool = Pool(q, **FAST)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run)
                await wait_for(lambda: any("retrying" in r.getMessage() for r in caplog.records), 8, "a retry")
                pool.stop()
    assert any("invalid username-password pair" in r.getMessage() for r in caplog.records)
    assert_no_secret(caplog.text + "\n".join(r.getMessage() for r in caplog.records), password)
    assert_no_secret(caplog.text, password[::-1])


# -- TLS ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path


def make_certs(d: Path) -> Certs:
    """A CA, and a server (for 127.0.0.1) and a client certificate it signed, all EC P-256, 1 day."""

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.crt", "-days", "1",
            "-subj", "/CN=aiotaskq test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt", "-CAkey", d / "ca.key",
                "-CAcreateserial", "-out", d / f"{name}.crt", "-days", "1", "-extfile", d / f"{name}.ext")  # fmt: skip
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def tls_unsupported() -> str | None:
    """Why the Redis server the suite runs cannot serve TLS, or None when it can."""
    exe = find_server()
    if shutil.which("openssl") is None:
        return "the openssl command is not installed (needed to make the test certificates)"
    probe = subprocess.run([exe, "--port", "0", "--tls-port", "0", "--save", ""], capture_output=True, timeout=10)
    out = (probe.stdout + probe.stderr).decode(errors="replace")
    # Redis refuses the option without TLS; Valkey accepts it and fails only when it opens the port.
    probe = subprocess.run([exe, "--port", "0", "--tls-port", str(free_port()), "--save", "", "--tls-cert-file",
                            "/nonexistent"], capture_output=True, timeout=10)  # fmt: skip
    out += (probe.stdout + probe.stderr).decode(errors="replace")
    if "FATAL CONFIG" in out or "Failed finding TLS support" in out:
        return f"this server build ({exe}) has no TLS support ({out.strip().splitlines()[-1]})"
    return None


class TlsRedisServer(RedisServer):
    """A redis-server that listens for TLS only and asks clients for a certificate."""

    def __init__(self, certs: Certs) -> None:
        self.certs = certs
        port = free_port()
        super().__init__(
            port=port,
            extra_args=(
                "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs.server_crt),
                "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
                "--tls-auth-clients", "yes",
            ),
        )  # fmt: skip

    def url_with(self, **params: Path) -> str:
        query = urlencode({k: str(v) for k, v in params.items()})
        return f"rediss://127.0.0.1:{self.port}/0?socket_timeout=5&{query}"

    @property
    def url(self) -> str:
        c = self.certs
        return self.url_with(ssl_ca_certs=c.ca, ssl_certfile=c.client_crt, ssl_keyfile=c.client_key)

    def _ping(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca))
        ctx.load_cert_chain(self.certs.client_crt, self.certs.client_key)
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
            ):
                s.sendall(b"PING\r\n")
                return b"PONG" in s.recv(64)
        except OSError:
            return False


async def test_tls_with_certificates_made_in_the_test(tmp_path: Path) -> None:
    reason = tls_unsupported()
    if reason is not None:
        pytest.skip(f"TLS test skipped: {reason}")
    certs = make_certs(tmp_path)
    server = TlsRedisServer(certs)
    with server:
        name = unique("tls")
        async with Queue(name, url=server.url) as q:

            @q.task(name="fault.add")
            async def add(x: int, y: int) -> int:
                return x + y

            async with run_pool(q):
                job = await add.enqueue(40, 2)
                assert await job.result(timeout=5) == 42
            assert q.url.startswith("rediss://127.0.0.1:")
            info = await run_cli("info", APP, "--json", "--url", server.url, queue_name=name)
            assert info.returncode == 0, info.stderr
            assert json.loads(info.stdout)[0]["counts"]["succeeded"] == 1

        refused = {
            "plain": f"redis://127.0.0.1:{server.port}/0?socket_timeout=5",
            "CA not trusted": server.url_with(ssl_certfile=certs.client_crt, ssl_keyfile=certs.client_key),
            "no client certificate": server.url_with(ssl_ca_certs=certs.ca),
        }
        for what, url in refused.items():
            client = Redis.from_url(url, retry=Retry(NoBackoff(), 0))  # refused at once, not after retries
            async with Queue(name, redis=client) as q:
                with anyio.fail_after(10), pytest.raises((RedisConnectionError, OSError)) as caught:
                    await q.counts()
            await client.aclose()
            if what == "CA not trusted":  # refused by the client; the other two by the server, in a race-dependent way
                assert "certificate verify failed" in str(caught.value), caught.value


# -- no pickle, no eval; only registered tasks run ------------------------------------------------------

BANNED_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "jsonpickle"}
BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}


def banned_uses(tree: ast.AST) -> list[str]:
    """Imports of serialisers that can run code, and any use of the builtins that run code."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (
            (node.module or "").split(".")[0] in BANNED_MODULES
            or (node.module == "builtins" and any(a.name in BANNED_BUILTINS for a in node.names))
        ):
            found.append(f"from {node.module} import at line {node.lineno}")
        elif isinstance(node, ast.Name) and node.id in BANNED_BUILTINS:
            found.append(f"{node.id} at line {node.lineno}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in BANNED_BUILTINS
            and isinstance(node.value, ast.Name)
            and node.value.id == "builtins"
        ):
            found.append(f"builtins.{node.attr} at line {node.lineno}")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "import dill.source",
        "from marshal import loads",
        "from shelve import open as o",
        "eval('1')",
        "f = exec",
        "builtins.compile('x', 'f', 'exec')",
        "from builtins import eval as e",
        "__import__('os')",
    ],
)
def test_scanner_finds_what_it_looks_for(source: str) -> None:
    assert banned_uses(ast.parse(source))


def test_scanner_leaves_ordinary_code_alone() -> None:
    assert banned_uses(ast.parse("re.compile('x')\nmsgspec.msgpack.decode(b'')\nimportlib.import_module('m')")) == []


def test_no_pickle_or_eval_in_the_package() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    offenders = {str(p.relative_to(ROOT)): banned_uses(ast.parse(p.read_text(), str(p))) for p in sources}
    assert {k: v for k, v in offenders.items() if v} == {}
    for lua in sorted((PACKAGE / "lua").glob("*.lua")):
        text = lua.read_text()
        assert not re.search(r"\b(loadstring|load|dofile|loadfile)\s*\(", text), lua.name


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.run", "posix.system", "aiotaskq.cli.main"])
async def test_only_registered_tasks_run(queue: Queue, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "ran"
    payloads: dict[str, tuple[Any, ...]] = {
        "os.system": (f"touch {marker}",),
        "builtins.eval": (f"open({str(marker)!r}, 'w')",),
        "subprocess.run": (["touch", str(marker)],),
        "posix.system": (f"touch {marker}",),
        "aiotaskq.cli.main": (["info", "nowhere:queue"],),
    }

    @queue.task(name="registered")
    async def registered() -> str:
        return "ok"

    job = must(await queue.enqueue(name, args=payloads[name], retries=3))
    async with run_pool(queue):
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=5)
        assert await (await registered.enqueue()).result(timeout=5) == "ok"
    assert caught.value.error == f"UnknownTask: no task named {name!r} is registered in this worker"
    info = await job.info()
    assert info.attempts == 1 and info.status is JobStatus.FAILED
    assert not marker.exists()


async def _has_ticked(q: Queue) -> bool:
    return bool((await q.schedules())[0].last_job_id)
