"""Redis down, hung or back: reads degrade, writes are skipped, invalidations always raise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from cachebus.contracts.errors import BackendUnavailable, CircuitOpenError
from cachebus.contracts.keys import KeySpace
from cachebus.core import BreakerConfig, Cache, CacheConfig, RedisSettings, SyncCache
from cachebus.core.breaker import BreakerState
from cachebus.testing import FaultProxy, RedisServer

pytestmark = pytest.mark.fault

FAST = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, "retries": 0, "pool_timeout": 0.5}


def _config(failures: int = 3, cooldown: float = 0.5) -> CacheConfig:
    return CacheConfig(breaker=BreakerConfig(failures=failures, window=10, cooldown=cooldown))


async def test_while_redis_is_down_reads_miss_writes_skip_and_invalidations_raise(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_server.url, keyspace, _config(failures=100), **FAST) as cache:
        await cache.set("prices", "m", 1)
        redis_server.kill()
        assert await cache.get("prices", "m", "fallback") == "fallback"
        assert await cache.get_many("prices", ["m"]) == {}
        assert await cache.set("prices", "m", 2) is False
        with pytest.raises(BackendUnavailable, match="is Redis up"):
            await cache.invalidate_keys("prices", ["m"])
        with pytest.raises(BackendUnavailable):
            await cache.invalidate_pattern("prices", "m*")
        with pytest.raises(BackendUnavailable):
            await cache.flush_namespace("prices")
        stats = cache.stats
        assert (stats.degraded_reads, stats.skipped_writes, stats.backend_errors) == (2, 1, 6)


async def test_get_or_set_answers_from_the_loader_while_redis_is_down(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_server.url, keyspace, _config(failures=100), **FAST) as cache:
        redis_server.kill()

        async def loader() -> str:
            return "from the database"

        assert await cache.get_or_set("market", "1:summary", loader) == "from the database"
        assert cache.stats.loads == 1 and cache.stats.degraded_reads == 1


async def test_an_open_breaker_fails_invalidations_fast_without_trying_redis(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_server.url, keyspace, _config(cooldown=30), **FAST) as cache:
        redis_server.kill()
        for _ in range(3):
            await cache.get("prices", "m")
        assert cache.breaker is not None and cache.breaker.state is BreakerState.OPEN
        errors_before = cache.stats.backend_errors
        started = time.monotonic()
        with pytest.raises(CircuitOpenError, match=r"circuit .* is open"):
            await cache.invalidate_keys("prices", ["m"])
        assert await cache.get("prices", "m", "miss") == "miss"
        assert await cache.set("prices", "m", 1) is False
        assert time.monotonic() - started < 0.1
        assert cache.stats.backend_errors == errors_before  # Redis was not even tried
        assert cache.stats.rejected_invalidations == 1


async def test_the_breaker_closes_when_a_probe_finds_redis_back(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_server.url, keyspace, _config(cooldown=0.3), **FAST) as cache:
        redis_server.kill()
        for _ in range(3):
            await cache.get("prices", "m")
        assert cache.breaker is not None and cache.breaker.state is BreakerState.OPEN
        redis_server.start()
        await asyncio.sleep(0.35)
        assert await cache.set("prices", "m", "back") is True  # the probe
        assert cache.breaker.state is BreakerState.CLOSED
        assert await cache.invalidate_keys("prices", ["m"]) == 1


async def test_a_hung_redis_makes_an_invalidation_raise_within_the_documented_bound(
    redis_server: RedisServer,
    fault_proxy_factory: Callable[[RedisServer], FaultProxy],
    keyspace: KeySpace,
) -> None:
    proxy = fault_proxy_factory(redis_server)
    url = proxy.url_for(redis_server.url)
    options = {
        "socket_timeout": 0.3,
        "socket_connect_timeout": 0.3,
        "retries": 1,
        "pool_timeout": 0.3,
    }
    bound = RedisSettings.from_url(url, **options).max_command_seconds
    async with Cache.from_url(url, keyspace, _config(failures=100), **options) as cache:
        await cache.set("prices", "m", 1)
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"timed out|failed"):
            await cache.invalidate_keys("prices", ["m"])
        assert time.monotonic() - started <= bound + 0.5
        proxy.heal()


def test_the_sync_cache_follows_the_same_policy(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    with SyncCache.from_url(redis_server.url, keyspace, _config(cooldown=30), **FAST) as cache:
        cache.set("user", "1:profile", "x")
        redis_server.kill()
        assert cache.get("user", "1:profile") is None
        assert cache.get_or_set("user", "1:profile", lambda: "loaded") == "loaded"
        with pytest.raises(BackendUnavailable):
            cache.delete("user", "1:profile")
        assert cache.breaker is not None and cache.breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            cache.flush_scope()
