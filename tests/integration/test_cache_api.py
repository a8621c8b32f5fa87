"""The cache API against a real Redis: values, TTL classes, adaptive TTL, sync/async parity."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig, SyncCache, ValueCodec


@pytest.fixture
async def cache(redis_url: str, keyspace: KeySpace) -> AsyncIterator[Cache]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Cache(client, keyspace)
    await client.aclose()


@pytest.fixture
def sync_cache(redis_url: str, keyspace: KeySpace) -> Iterator[SyncCache]:
    client = redis.Redis.from_url(redis_url)
    yield SyncCache(client, keyspace)
    client.close()


async def test_a_value_set_is_read_back(cache: Cache) -> None:
    assert await cache.set("market", "1:summary", {"question": "Will it rain?", "p": 0.4})
    assert await cache.get("market", "1:summary") == {"question": "Will it rain?", "p": 0.4}
    assert await cache.get("market", "2:summary", "absent") == "absent"
    assert (cache.stats.hits, cache.stats.misses, cache.stats.sets) == (1, 1, 1)


async def test_many_values_go_and_come_in_one_round_trip_each(cache: Cache) -> None:
    before = len(cache.stats.latency)
    assert await cache.set_many("prices", {str(i): i / 100 for i in range(50)}) == 50
    found = await cache.get_many("prices", [str(i) for i in range(60)])
    assert found == {str(i): i / 100 for i in range(50)}
    # one round trip for the generation (first write), one for the SETs, one for the read
    assert len(cache.stats.latency) - before <= 3


async def test_each_namespace_expires_after_its_registry_ttl(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("prices", "m", 1)
    await cache.set("user", "9:profile", 2)
    assert 19_000 < redis_client.pttl(keyspace.key("prices", "m")) <= 20_000  # ttl_s = 20
    assert 3_599_000 < redis_client.pttl(keyspace.key("user", "9:profile")) <= 3_600_000


async def test_a_config_override_wins_over_the_registry_ttl(
    redis_url: str, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_url, keyspace, CacheConfig(ttls={"prices": 7})) as cache:
        await cache.set("prices", "m", 1)
    assert 6_000 < redis_client.pttl(keyspace.key("prices", "m")) <= 7_000


async def test_an_explicit_ttl_overrides_the_namespace_ttl(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("market", "x:detail", "v", ttl=2.5)
    assert 2_000 < redis_client.pttl(keyspace.key("market", "x:detail")) <= 2_500
    with pytest.raises(ConfigError, match="positive"):
        await cache.set("market", "x:detail", "v", ttl=0)


async def test_a_hit_restores_the_full_ttl_atomically(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    key = keyspace.key("market", "7:summary")
    await cache.set("market", "7:summary", {"a": 1})
    redis_client.pexpire(key, 1_000)  # the value is in the last part of its 300 s life
    assert await cache.get("market", "7:summary") == {"a": 1}
    assert redis_client.pttl(key) > 299_000


async def test_adaptive_ttl_can_be_switched_off_per_namespace(
    redis_url: str, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, keyspace, CacheConfig(adaptive_ttl=frozenset({"user"})))
    key = keyspace.key("market", "7:summary")
    await cache.set("market", "7:summary", 1)
    redis_client.pexpire(key, 5_000)
    assert await cache.get("market", "7:summary") == 1
    assert redis_client.pttl(key) <= 5_000
    await client.aclose()


async def test_a_hot_value_is_not_kept_beyond_the_adaptive_age_cap(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    # prices: 20 s TTL, cap 4x -> a value written 81 s ago is a miss however often it is hit
    stored = ValueCodec().encode(0.5, 0, now=time.time() - 81)
    redis_client.set(keyspace.key("prices", "hot"), stored, px=20_000)
    assert cache.decode(stored).value == 0.5
    assert await cache.get("prices", "hot") is None
    assert cache.stats.stale == 1
    assert redis_client.exists(keyspace.key("prices", "hot")) == 0


async def test_bad_ids_and_namespaces_are_refused_before_any_io(cache: Cache) -> None:
    with pytest.raises(ContractError, match="not registered"):
        await cache.get("nope", "1")
    with pytest.raises(ContractError, match="NUL, CR or LF"):
        await cache.set("prices", "a\nb", 1)
    assert len(cache.stats.latency) == 0


def test_the_sync_cache_reads_what_the_async_one_wrote(
    sync_cache: SyncCache, redis_url: str, keyspace: KeySpace
) -> None:
    import asyncio

    async def write() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await Cache(client, keyspace).set("positions", "5:all", [{"size": 3.5}])
        await client.aclose()

    asyncio.run(write())
    assert sync_cache.get("positions", "5:all") == [{"size": 3.5}]
    assert sync_cache.set_many("positions", [("5:1", b"raw")]) == 1
    assert sync_cache.get_many("positions", ["5:1", "5:2"]) == {"5:1": b"raw"}
    counts = {k.namespace: k.count for k in sync_cache.health().key_counts}
    assert counts["positions"] == 2


def test_a_decode_responses_client_is_refused_with_the_reason(
    redis_url: str, keyspace: KeySpace
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        SyncCache(client, keyspace)
    with pytest.raises(ConfigError, match="use Cache for the other kind"):
        SyncCache(redis.asyncio.Redis.from_url(redis_url), keyspace)  # type: ignore[arg-type]
    client.close()


def test_a_wrong_url_is_a_config_error(keyspace: KeySpace) -> None:
    with pytest.raises(ConfigError, match="scheme 'http'"):
        SyncCache.from_url("http://localhost:6379", keyspace)
    with pytest.raises(ConfigError, match="names no host"):
        Cache.from_url("redis://", keyspace)


async def test_a_cache_from_url_owns_and_closes_its_pool(
    redis_url: str, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_url, keyspace, max_connections=3) as cache:
        await cache.set("prices", "p", 1)
        assert cache.client.connection_pool.max_connections == 3
        assert await cache.get("prices", "p") == 1
    assert cache._owned_pool is None
