"""The cache core on a real Redis Cluster: every operation, across slots and shards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeySpace
from cachebus.contracts.partitions import key_slot
from cachebus.core import Cache, SyncCache
from cachebus.testing.cluster import RedisClusterHarness

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster_client(
    redis_cluster: RedisClusterHarness,
) -> AsyncIterator[redis.asyncio.RedisCluster]:
    client = redis_cluster.async_client()
    yield client
    await client.aclose()


def keys_on_each_primary(cluster: RedisClusterHarness, match: str) -> dict[int, int]:
    counts = {}
    for node in cluster.primaries():
        client = node.client()
        counts[node.port] = sum(1 for _ in client.scan_iter(match=match, count=1000))
        client.close()
    return counts


async def test_reads_writes_and_key_invalidations_span_every_shard(
    cluster_client: redis.asyncio.RedisCluster, keyspace: KeySpace
) -> None:
    cache = Cache(cluster_client, keyspace)
    values = {str(i): {"n": i} for i in range(500)}
    assert await cache.set_many("prices", values) == 500
    assert len({key_slot(keyspace.key("prices", i)) for i in values}) > 400
    assert await cache.get_many("prices", values) == values
    assert await cache.invalidate_keys("prices", [str(i) for i in range(250)]) == 250
    left = await cache.get_many("prices", values)
    assert sorted(left, key=int) == [str(i) for i in range(250, 500)]


async def test_get_or_set_fills_through_a_lease_in_the_values_slot(
    cluster_client: redis.asyncio.RedisCluster, keyspace: KeySpace
) -> None:
    cache = Cache(cluster_client, keyspace)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(cache.get_or_set("prices", "m1", load) for _ in range(5)))
    assert results == [42] * 5 and calls == 1
    assert await cache.get("prices", "m1") == 42
    assert cache.stats.sets == 1
    # A tagged id works too; an id with a stray brace is refused before any I/O.
    assert await cache.get_or_set("prices", "{m2}:detail", load) == 42
    with pytest.raises(ContractError) as info:
        await cache.get_or_set("prices", "m}3", load)
    assert info.value.rule == "id.cluster_slot"


async def test_pattern_invalidation_removes_matches_on_every_shard(
    redis_cluster: RedisClusterHarness,
    cluster_client: redis.asyncio.RedisCluster,
    keyspace: KeySpace,
) -> None:
    cache = Cache(cluster_client, keyspace)
    await cache.set_many("positions", {f"{u}:{p}": p for u in range(40) for p in range(25)})
    match = keyspace.match("positions", "1*:*")
    before = keys_on_each_primary(redis_cluster, match)
    assert len(before) == 3 and all(n > 0 for n in before.values())
    result = await cache.invalidate_pattern("positions", "1*:*")
    assert result.deleted == sum(before.values()) == 11 * 25
    assert not result.escalated
    assert keys_on_each_primary(redis_cluster, match) == dict.fromkeys(before, 0)
    rest = await cache.get_many("positions", [f"{u}:{p}" for u in range(40) for p in range(25)])
    assert len(rest) == 1000 - 275 and not any(k.startswith("1") for k in rest)


async def test_a_pattern_over_the_cap_escalates_to_one_namespace_flush(
    cluster_client: redis.asyncio.RedisCluster, keyspace: KeySpace
) -> None:
    cache = Cache(cluster_client, keyspace)
    await cache.set_many("market", {f"{i}:summary": i for i in range(300)})
    result = await cache.invalidate_pattern("market", "*:summary", max_keys=50)
    assert result.escalated and result.generation is not None
    assert await cache.get_many("market", [f"{i}:summary" for i in range(300)]) == {}


async def test_a_namespace_flush_is_one_command_on_one_generation_key(
    cluster_client: redis.asyncio.RedisCluster, keyspace: KeySpace
) -> None:
    cache = Cache(cluster_client, keyspace)
    await cache.set_many("user", {str(i): i for i in range(100)})
    observed: list[float] = []
    cache._core.observe = observed.append  # type: ignore[method-assign]
    generation = await cache.flush_namespace("user")
    assert len(observed) == 1  # one round trip: one FLUSH script on the generation key
    assert int(await cluster_client.get(keyspace.generation_key("user"))) == generation
    assert await cache.get_many("user", [str(i) for i in range(100)]) == {}
    await cache.flush_scope()  # every namespace's generation, each its own key


async def test_health_judges_every_primary(
    cluster_client: redis.asyncio.RedisCluster, keyspace: KeySpace
) -> None:
    cache = Cache(cluster_client, keyspace)
    await cache.set_many("prices", {str(i): i for i in range(120)})
    report = await cache.health()
    assert report.server["cluster_primaries"] == 3
    assert report.server["dbsize"] >= 120
    counts = {k.namespace: k for k in report.key_counts}
    assert counts["prices"].count == 120 and counts["prices"].exact


def test_the_sync_cache_works_on_a_cluster_too(
    redis_cluster: RedisClusterHarness, keyspace: KeySpace
) -> None:
    cache = SyncCache(redis_cluster.client(), keyspace)
    cache.set_many("positions", {f"{u}:{p}": p for u in range(20) for p in range(5)})
    assert cache.invalidate_pattern("positions", "1*:*").deleted == 11 * 5
    assert cache.get_or_set("prices", "s1", lambda: 7) == 7
    assert cache.get("prices", "s1") == 7
    assert cache.invalidate_keys("prices", ["s1"]) == 1
    cache.client.close()


async def test_from_url_with_cluster_true_owns_its_cluster_client(
    redis_cluster: RedisClusterHarness, keyspace: KeySpace
) -> None:
    async with Cache.from_url(redis_cluster.url, keyspace, cluster=True) as cache:
        await cache.set("prices", "u1", 1)
        assert await cache.get("prices", "u1") == 1
        assert isinstance(cache.client, redis.asyncio.RedisCluster)
