from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from aiotaskq._listener import Listener
from aiotaskq.testing import RedisServer


async def test_a_failed_subscribe_can_be_retried() -> None:
    """A subscribe that fails (Redis away) leaves nothing behind: the next try
    subscribes for real and gets messages, instead of waiting forever."""
    server = RedisServer()
    got: list[bytes | None] = []
    redis = Redis.from_url(server.url)
    listener = Listener(redis)
    try:
        with pytest.raises(RedisConnectionError):
            await listener.subscribe("chan", got.append)
        server.start()
        with anyio.fail_after(5):
            await listener.subscribe("chan", got.append)
            await redis.publish("chan", b"hello")
            while b"hello" not in got:  # noqa: ASYNC110 - the callback is plain; poll briefly
                await anyio.sleep(0.01)
    finally:
        await listener.close()
        await redis.aclose()
        server.close()
