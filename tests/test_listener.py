from __future__ import annotations

import anyio
import pytest
from _util import shard_subscribers, spublish
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
            await spublish(redis, "chan", b"hello")  # a shard channel (Redis >= 7)
            while b"hello" not in got:  # noqa: ASYNC110 - the callback is plain; poll briefly
                await anyio.sleep(0.01)
    finally:
        await listener.close()
        await redis.aclose()
        server.close()


async def test_channels_are_shard_channels_and_come_back_after_a_lost_connection(redis_server: RedisServer) -> None:
    """On Redis 7 the listener subscribes shard channels (the scripts SPUBLISH), which redis-py 5
    does not re-subscribe by itself: after the connection is killed the listener subscribes
    again, tells its callbacks to look again (None), and hears the next message."""
    redis = Redis.from_url(redis_server.url)
    listener = Listener(redis)
    got: list[bytes | None] = []
    try:
        await listener.subscribe("aiotaskq:{t}:chan", got.append)
        assert await shard_subscribers(redis, "aiotaskq:{t}:chan") == 1
        assert await redis.pubsub_numsub("aiotaskq:{t}:chan") == [(b"aiotaskq:{t}:chan", 0)]  # not a plain one
        assert await redis.client_kill_filter(_type="pubsub") >= 1

        async def back() -> bool:
            return await shard_subscribers(redis, "aiotaskq:{t}:chan") == 1

        with anyio.fail_after(10):
            while not await back():  # noqa: ASYNC110 - a condition on Redis, polled briefly
                await anyio.sleep(0.01)
            await spublish(redis, "aiotaskq:{t}:chan", b"after")
            while b"after" not in got:  # noqa: ASYNC110 - the callback is plain; poll briefly
                await anyio.sleep(0.01)
        assert None in got and got.index(None) < got.index(b"after")
    finally:
        await listener.close()
        await redis.aclose()
