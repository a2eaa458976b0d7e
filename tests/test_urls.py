"""Cluster and Sentinel URLs: a bad one is a ValueError when the queue makes its client (the
CLI turns it into exit 2), and a password in one is never shown."""

from __future__ import annotations

import pytest

from aiotaskq import Queue


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h1:1,h2", "'h2' is not host:port"),
        ("redis+cluster://h1:1/2", "database 0 only"),
        ("redis+cluster://", "'' is not host:port"),
        ("redis+sentinel://h1:1", "expected /<service name>"),
        ("redis+sentinel://h1:1/svc/x", "must be a number"),
        ("redis+sentinel://h1/svc", "'h1' is not host:port"),
    ],
)
def test_a_bad_cluster_or_sentinel_url_is_a_value_error_at_once(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Queue("q", url=url).redis  # noqa: B018 - the client is made (and the URL parsed) on first use


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+cluster://:s3cret@h1:1,h2:2", "redis+cluster://:***@h1:1,h2:2"),
        ("redis+sentinel://:s3cret@h1:1/svc/0", "redis+sentinel://:***@h1:1/svc/0"),
    ],
)
def test_a_cluster_or_sentinel_url_password_is_never_shown(url: str, shown: str) -> None:
    q = Queue("q", url=url)
    assert q.url == shown and "s3cret" not in repr(q)
