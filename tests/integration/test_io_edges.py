"""The sans-I/O edges: one step, driven sync and async, against a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
import redis.asyncio

from cachebus.contracts.errors import BackendError, BackendUnavailable, GroupMissingError
from cachebus.core._io import Batch, Script, Step, run_async, run_sync
from cachebus.core.connection import (
    RedisSettings,
    async_client,
    close_shared_pools,
    map_redis_errors,
    sync_client,
)
from cachebus.testing import RedisServer

INCR_BY = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


def add_then_read(key: str) -> Step[tuple[int, bytes | None]]:
    first = yield Batch([INCR_BY.call([key], [5])], operation="incr")
    second = yield Batch([("INCR", key), ("GET", key)], operation="read")
    return int(first[0]), second[1]


def test_sync_and_async_edges_run_the_same_step(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert run_sync(add_then_read(f"{prefix}:a"), client) == (5, b"6")
    client.close()


async def test_async_edge_runs_the_same_step(redis_url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    assert await run_async(add_then_read(f"{prefix}:a"), client) == (5, b"6")
    await client.aclose()


def test_scripts_are_reloaded_after_the_script_cache_is_flushed(
    redis_url: str, prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    run_sync(add_then_read(f"{prefix}:b"), client)
    client.script_flush()
    assert run_sync(add_then_read(f"{prefix}:b"), client) == (11, b"12")
    client.close()


def test_errors_in_a_batch_come_back_translated(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:s", "x")

    def step() -> Step[list[object]]:
        return (
            yield Batch([("INCR", f"{prefix}:s"), ("GET", f"{prefix}:s")], raise_on_error=False)
        )

    results = run_sync(step(), client)
    assert isinstance(results[0], BackendError)
    assert results[1] == b"x"

    def strict() -> Step[list[object]]:
        return (yield Batch([("INCR", f"{prefix}:s")], operation="incr"))

    with pytest.raises(BackendError, match="incr"):
        run_sync(strict(), client)
    client.close()


def test_nogroup_maps_to_group_missing(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(GroupMissingError), map_redis_errors("XREADGROUP"):
        client.xreadgroup("g", "c", {f"{prefix}:nostream": ">"})
    client.close()


@pytest.mark.fault
def test_a_down_server_maps_to_backend_unavailable_within_the_bound(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    import time

    server = redis_server_factory()
    settings = RedisSettings.from_url(
        server.url, socket_timeout=0.3, socket_connect_timeout=0.3, retries=1
    )
    client = sync_client(settings)
    assert client.ping()
    server.kill()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="is Redis up"), map_redis_errors("PING"):
        client.ping()
    assert time.monotonic() - started <= settings.max_command_seconds
    client.close()


async def test_shared_pool_is_one_per_settings_and_loop(redis_url: str) -> None:
    settings = RedisSettings.from_url(redis_url, max_connections=3)
    a, b = async_client(settings), async_client(settings)
    assert a.connection_pool is b.connection_pool
    await a.ping()
    await a.aclose()
    # Closing a borrowing client leaves the shared pool usable.
    assert await b.ping()
    await b.aclose()
    await close_shared_pools()
