"""Bounded blast radius: paced deletes, patterns that escalate to a flush instead of a long
SCAN, and (with the ACL) a consumer that only touches its own namespaces and scope."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio

from cachebus.consumers import RedisCacheSink
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig, SyncCache
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY
from tests.security.conftest import Deployment

PACED = CacheConfig(max_deletes_per_second=2000, delete_burst=500, unlink_batch=250)


async def test_key_and_pattern_deletes_are_paced_at_the_configured_rate(
    redis_url: str, prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, KeySpace(prefix, "bot", registry=REGISTRY), PACED)
    ids = [f"{i}:all" for i in range(1500)]
    await cache.set_many("positions", {i: 1 for i in ids})
    started = time.monotonic()
    assert await cache.invalidate_keys("positions", ids) == 1500
    elapsed = time.monotonic() - started
    # 500 at once (the burst), then 1000 at 2000/s: the deletes cannot end before 0.5 s. Only
    # that floor is judged: the bucket also refills while the round trips run, so on a loaded
    # machine the sleeps alone are shorter (439 ms of 500 seen beside four other test runs).
    assert cache.stats.delete_waits >= 1 and elapsed >= 0.45
    await cache.set_many("positions", {i: 1 for i in ids})
    waited_before = cache.stats.delete_wait_ms
    started = time.monotonic()
    result = await cache.invalidate_pattern("positions", "*:all")
    assert result.deleted == 1500 and not result.escalated
    # The bucket refilled while the keys were written back, to the burst at most: 1,000 of
    # the 1,500 deletes still wait, 0.5 s at 2,000/s, however slow the round trips are.
    assert cache.stats.delete_wait_ms > waited_before
    assert time.monotonic() - started >= 0.45
    await client.aclose()


async def test_pacing_sleeps_without_blocking_the_event_loop(redis_url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, KeySpace(prefix, "bot", registry=REGISTRY), PACED)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await cache.invalidate_keys("positions", [f"{i}:all" for i in range(1500)])
    task.cancel()
    assert ticks >= 10  # the loop kept running during the ~0.5 s of waits
    await client.aclose()


def test_the_sync_facade_is_paced_too(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = SyncCache(client, KeySpace(prefix, "bot", registry=REGISTRY), PACED)
    started = time.monotonic()
    cache.invalidate_keys("positions", [f"{i}:all" for i in range(1000)])
    assert cache.stats.delete_waits >= 1 and time.monotonic() - started >= 0.2
    client.close()


async def test_without_a_limit_nothing_waits(redis_url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, KeySpace(prefix, "bot", registry=REGISTRY))
    await cache.invalidate_keys("positions", [f"{i}:all" for i in range(3000)])
    assert cache.stats.delete_waits == 0
    await client.aclose()


async def test_a_huge_pattern_escalates_to_a_namespace_flush_under_the_acl(
    deployment: Deployment,
) -> None:
    admin = deployment.async_client("admin")
    seeded = deployment.cache(admin, "bot")
    await seeded.set_many("positions", {f"{i}:all": i for i in range(3000)})
    client = deployment.async_client("bot")
    cache = Cache(client, KeySpace("cb", "bot", registry=REGISTRY), CacheConfig(scan_count=100))
    sink = RedisCacheSink(cache, max_keys_per_pattern=200)
    consumer = deployment.consumer(client, "bot", sink=sink)
    await consumer.run(until_idle=True)
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        await producer.invalidate_pattern("positions", "*:all")
    await consumer.run(until_idle=True)
    assert sink.escalations == 1 and cache.stats.escalations == 1
    # Stopped early: a few SCAN calls and no mass UNLINK, yet nothing stale is visible.
    assert cache.stats.invalidations < 1000
    assert await seeded.get_many("positions", ["1:all", "2999:all"]) == {}
    await client.aclose()
    await admin.aclose()
