"""A queue behind Redis Sentinel: ``redis+sentinel://[user:pw@]h1:p1,h2:p2/<service>[/db]``.

The queue's connections go to the master the sentinels name for the service (``SENTINEL
get-master-addr-by-name``), asked again whenever a connection fails or the server answers
READONLY (the old master came back as a replica): see _discovery.py. The URL's credentials
and query options are the master's; sentinels that require a password of their own take
``?sentinel_password=`` (and ``?sentinel_username=``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ._discovery import Master, MasterUnknown, host_port, parse_hosts

SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}


def parse_sentinel_url(url: str) -> tuple[str, list[tuple[str, int]], str, dict[str, str]]:
    """-> (a plain URL for the master, with the URL's credentials, db and options; the
    sentinels; the service name; the sentinels' own credentials). ValueError when it does not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Sentinel URL (expected {' or '.join(s + '://' for s in SCHEMES)})")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    sentinels = parse_hosts(hosts, "Sentinel")
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("Sentinel URL: expected /<service name>[/<db>] after the sentinels")
    service, db = parts[0], parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"Sentinel URL: the database must be a number, not {db!r}")
    options = parse_qsl(query, keep_blank_values=True)
    own = {k: v for k, v in options if k in ("sentinel_password", "sentinel_username")}
    rest_query = urlencode([(k, v) for k, v in options if k not in own])
    # the first sentinel's address is a placeholder: connections ask the sentinels
    plain = f"{SCHEMES[scheme]}://{userinfo}{at}{host_port(*sentinels[0])}/{db}"
    plain += f"?{rest_query}" if rest_query else ""
    auth = {k.removeprefix("sentinel_"): v for k, v in own.items()}
    return plain, sentinels, service, auth


class SentinelMaster(Master):
    """The master the sentinels name for ``service``."""

    def __init__(self, sentinels: list[tuple[str, int]], service: str, sentinel_auth: dict[str, str]) -> None:
        super().__init__(sentinels[0])
        self.sentinels = list(sentinels)
        self.service = service
        self.sentinel_auth = sentinel_auth

    async def _find(self) -> tuple[str, int]:
        errors: list[str] = []
        kwargs: dict[str, Any] = {k: v for k, v in self.connect_kwargs.items() if k.startswith("socket_")}
        kwargs.update(self.sentinel_auth)
        for i, (host, port) in enumerate(self.sentinels):
            client = Redis(host=host, port=port, **kwargs)
            try:
                reply: Any = await client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
            except (RedisError, OSError) as exc:
                errors.append(f"sentinel {host}:{port}: {exc}")
                continue
            finally:
                await client.aclose()
            if not reply:
                errors.append(f"sentinel {host}:{port}: no master named {self.service!r}")
                continue
            if i:  # ask the one that answered first next time
                self.sentinels.insert(0, self.sentinels.pop(i))
            master_host = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            return master_host, int(reply[1])
        raise MasterUnknown(f"no sentinel names a master for {self.service!r}: " + "; ".join(errors))
