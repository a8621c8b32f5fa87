"""Writes without a task (``cachebus.core._fastpack``): a small command on an idle connection is
written at once; anything that could wait goes through redis-py and its write timeout; a write
on a connection the server closed is reported by the read that follows, as redis-py reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
import redis.asyncio

from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.testing import RedisServer


@pytest.fixture
def timed_writes(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The timeouts of every ``asyncio.wait_for`` (redis-py's timed write) from now on."""
    seen: list[float | None] = []
    real = asyncio.wait_for

    def counting(fut: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
        seen.append(timeout)
        return real(fut, timeout)

    monkeypatch.setattr(asyncio, "wait_for", counting)
    return seen


async def test_small_commands_skip_the_timed_write_and_large_ones_keep_it(
    redis_url: str, prefix: str, timed_writes: list[float | None]
) -> None:
    pool = create_async_pool(RedisSettings.from_url(redis_url, socket_timeout=5.0))
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        assert await client.ping()  # the connection opens through redis-py
        timed_writes.clear()
        for i in range(20):
            await client.set(f"{prefix}:k{i}", b"v" * 100)
        pipe = client.pipeline(transaction=False)
        for i in range(20):
            pipe.get(f"{prefix}:k{i}")
        assert await pipe.execute() == [b"v" * 100] * 20
        assert timed_writes == []  # 21 round trips, not one task for a write

        await client.set(f"{prefix}:big", b"x" * 100_000)  # could fill the transport's buffer
        assert timed_writes == [5.0]
        assert await client.strlen(f"{prefix}:big") == 100_000
    finally:
        await client.delete(*[f"{prefix}:k{i}" for i in range(20)], f"{prefix}:big")
        await client.aclose()
        await pool.aclose()


async def test_a_write_to_a_server_that_went_away_fails_on_its_reply(
    redis_server: RedisServer, timed_writes: list[float | None]
) -> None:
    settings = RedisSettings.from_url(redis_server.url, socket_timeout=2.0, retries=0)
    pool = create_async_pool(settings)
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        assert await client.ping()
        redis_server.stop()
        with pytest.raises(redis.ConnectionError):
            await asyncio.wait_for(client.ping(), 10)
    finally:
        await client.aclose()
        await pool.aclose()
