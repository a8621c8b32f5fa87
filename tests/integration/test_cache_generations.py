"""Namespace generations: a flush is one O(1) step and no reader sees a value from before it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig
from cachebus.core._core import CacheCore
from tests.harness.registry import REGISTRY


@pytest.fixture
async def cache(redis_url: str, keyspace: KeySpace) -> AsyncIterator[Cache]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Cache(client, keyspace)
    await client.aclose()


async def test_a_flush_hides_every_value_of_the_namespace_and_only_it(cache: Cache) -> None:
    await cache.set_many("positions", {f"u{i}:all": i for i in range(20)})
    await cache.set("prices", "m", 0.3)
    generation = await cache.flush_namespace("positions")
    assert generation > 0
    assert await cache.get_many("positions", [f"u{i}:all" for i in range(20)]) == {}
    assert await cache.get("prices", "m") == 0.3


async def test_a_flush_is_a_single_round_trip_whatever_the_namespace_holds(cache: Cache) -> None:
    await cache.set_many("market", {f"{i}:summary": i for i in range(2000)})
    before = len(cache.stats.latency)
    await cache.flush_namespace("market")
    assert len(cache.stats.latency) - before == 1


async def test_values_written_after_a_flush_are_visible(cache: Cache) -> None:
    await cache.set("user", "1:profile", "old")
    await cache.flush_namespace("user")
    await cache.set("user", "1:profile", "new")
    assert await cache.get("user", "1:profile") == "new"


async def test_another_process_flush_hides_values_for_every_reader(
    redis_url: str, keyspace: KeySpace, cache: Cache
) -> None:
    await cache.set("market", "9:detail", {"v": 1})
    other_client = redis.asyncio.Redis.from_url(redis_url)
    await Cache(other_client, keyspace).flush_namespace("market")
    await other_client.aclose()
    assert await cache.get("market", "9:detail") is None


async def test_a_write_with_a_generation_seen_before_a_flush_stays_invisible(
    redis_url: str, keyspace: KeySpace
) -> None:
    # This process saw the generation, another flushed, then this process writes: the value
    # carries the old generation, so nobody reads it (a wasted write, never a stale read).
    client = redis.asyncio.Redis.from_url(redis_url)
    writer = Cache(client, keyspace, CacheConfig(generation_max_age=60))
    await writer.set("prices", "q", "anything")  # the namespace has a generation
    await writer.get("prices", "p")
    other = Cache(client, keyspace)
    await other.flush_namespace("prices")
    await writer.set("prices", "p", "computed before the flush")
    assert await other.get("prices", "p") is None
    await client.aclose()


async def test_a_lost_generation_key_never_brings_old_values_back(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    first = await cache.flush_namespace("prices")
    await cache.set("prices", "m", "from the first generation")
    redis_client.delete(keyspace.generation_key("prices"))  # evicted under allkeys-lru
    for _ in range(5):  # a bare counter would restart at 1 and could reach `first` again
        second = await cache.flush_namespace("prices")
    assert second > first
    assert redis_client.exists(keyspace.key("prices", "m")) == 1  # the old value is still there
    assert await cache.get("prices", "m") is None


async def test_a_lost_generation_key_hides_every_value_until_a_write_recreates_it(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("prices", "m", "written under the first generation")
    redis_client.delete(keyspace.generation_key("prices"))  # evicted under allkeys-lru
    assert await cache.get("prices", "m") is None  # no value is ever written under 0
    another_process = Cache(cache.client, keyspace)
    await another_process.set("prices", "n", "written under a new generation")
    generation = int(redis_client.get(keyspace.generation_key("prices")) or 0)
    assert generation >= int(time.time() * 1000) - 60_000
    assert await cache.get("prices", "m") is None
    assert await cache.get("prices", "n") == "written under a new generation"


async def test_a_garbage_generation_makes_reads_miss_until_a_flush_repairs_it(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("prices", "m", 1)
    redis_client.set(keyspace.generation_key("prices"), "not-a-number")
    assert await cache.get("prices", "m") is None
    assert await cache.flush_namespace("prices") > 0
    await cache.set("prices", "m", 2)
    assert await cache.get("prices", "m") == 2


async def test_flush_scope_bumps_every_namespace_in_one_round_trip(cache: Cache) -> None:
    for ns in cache.keyspace.registry.names:
        await cache.set(ns, "1", ns)
    before = len(cache.stats.latency)
    await cache.flush_scope()
    assert len(cache.stats.latency) - before == 1
    for ns in cache.keyspace.registry.names:
        assert await cache.get(ns, "1") is None


async def test_exact_keys_are_removed_without_knowing_the_generation(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.flush_namespace("market")
    await cache.set("market", "3:summary", 1)
    assert await cache.invalidate_keys("market", ["3:summary"]) == 1
    assert redis_client.exists(keyspace.key("market", "3:summary")) == 0


async def test_concurrent_flushes_and_reads_leave_writes_under_the_newest_generation(
    redis_url: str, keyspace: KeySpace
) -> None:
    # Several consumers (one per partition) share one cache and flush at once, while reads
    # run: replies arrive out of order, and an older generation remembered last made every
    # later write invisible (the failover test saw all 300 values read as stale).
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=8)
    cache = Cache(redis.asyncio.Redis(connection_pool=pool), keyspace)
    ids = [f"{i}:summary" for i in range(50)]
    for _ in range(30):
        await asyncio.gather(
            *(cache.flush_namespace("market") for _ in range(3)), cache.get_many("market", ids)
        )
        await cache.set_many("market", dict.fromkeys(ids, 1))
        assert len(await cache.get_many("market", ids)) == len(ids)
    await pool.aclose()


def test_an_older_generation_arriving_last_is_not_remembered() -> None:
    core = CacheCore(
        KeySpace(prefix="t", scope="svc", registry=REGISTRY), CacheConfig(generation_max_age=60)
    )
    core.remember_generation("market", 101)
    core.remember_generation("market", 100)
    assert core.known_generation("market") == 101


def test_an_expired_memory_takes_whatever_generation_comes() -> None:
    core = CacheCore(
        KeySpace(prefix="t", scope="svc", registry=REGISTRY), CacheConfig(generation_max_age=0.01)
    )
    core.remember_generation("market", 101)
    time.sleep(0.02)
    core.remember_generation("market", 5)  # the key was reset lower: heal, do not hold on
    assert core._generations["market"][0] == 5
