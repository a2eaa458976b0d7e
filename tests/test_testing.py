"""aiotaskq.testing: which server binary RedisServer runs, on a machine with or without one."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aiotaskq.testing import (
    SERVER_ENV,
    LocalSentinel,
    RedisServer,
    _executable,
    bundled_server,
    find_server,
    server_version,
)


def test_without_a_server_on_path_the_bundled_valkey_server_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    exe = find_server()
    assert exe == bundled_server()
    assert server_version(exe).startswith("Valkey server v=")


async def test_the_bundled_server_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with RedisServer() as server:
        assert server.executable == bundled_server()
        client = Redis.from_url(server.url)
        try:
            assert await client.ping() is True
            assert (await client.info("server")).get("valkey_version")
        finally:
            await client.aclose()


def test_the_environment_chooses_the_binary_and_a_bad_choice_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    valkey = bundled_server()
    assert valkey is not None
    monkeypatch.setenv(SERVER_ENV, valkey)
    assert find_server() == valkey
    monkeypatch.setenv(SERVER_ENV, "/nonexistent/redis-server")
    with pytest.raises(RuntimeError, match=r"\$AIOTASKQ_REDIS_SERVER: '/nonexistent/redis-server' is not"):
        find_server()
    with pytest.raises(RuntimeError, match=r"executable: 'nope' is not"):
        RedisServer(executable="nope")


def test_a_binary_without_its_executable_bit_is_made_runnable(tmp_path: Path) -> None:
    valkey = bundled_server()
    assert valkey is not None
    copy = tmp_path / "valkey-server"
    shutil.copyfile(valkey, copy)
    copy.chmod(0o644)
    runnable = _executable(copy)
    assert server_version(runnable).startswith("Valkey server v=")


def test_a_sentinel_set_up_whose_master_port_was_taken_follows_the_port_it_chose() -> None:
    """The master's free port is taken by another process before it binds: it chooses another,
    and the replica and sentinels are pointed there (they were given the first one)."""
    sentinel = LocalSentinel(replicas=1, down_after_ms=1000)
    taken = sentinel.master.port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with sentinel:
            assert sentinel.master.port != taken
            assert sentinel.master_port() == sentinel.master.port
