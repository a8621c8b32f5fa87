"""Invalidations reaching real caches: a service's Redis namespace and per-process L1s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio

from cachebus.consumers import (
    BroadcastConfig,
    BroadcastConsumer,
    Consumer,
    ConsumerConfig,
    LocalCacheSink,
    RedisCacheSink,
)
from cachebus.consumers.config import FlushReason
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, LocalCache
from cachebus.testing import FaultProxy, RedisServer, eventually
from tests.consumer.helpers import NS, Recorder, flush_event, keys_event, pattern_event, publish
from tests.harness.registry import REGISTRY


async def test_the_redis_sink_removes_keys_patterns_and_flushes_namespaces(
    redis_url: str, prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = StreamKeys(prefix)
    cache = Cache(client, KeySpace(prefix=prefix, scope="bot", registry=REGISTRY))
    config = ConsumerConfig(stream="inval", group="bot", consumer="b1", namespaces=NS, block_ms=100)
    consumer = Consumer(client, config, [RedisCacheSink(cache)], keys=keys)
    await consumer.run(until_idle=True)
    for i in range(10):
        await cache.set("prices", f"p{i}", {"price": i})
        await cache.set("market", f"m{i}:summary", {"m": i})
        await cache.set("market", f"m{i}:detail", {"m": i})
    await publish(
        client,
        keys,
        [
            keys_event("prices", "p1", "p2"),
            pattern_event("market", "m3:*"),
            keys_event("market", "m3:summary"),  # subsumed by the pattern
            flush_event("prices"),
        ],
    )
    await consumer.run(until_idle=True)
    assert all([await cache.get("prices", f"p{i}") is None for i in range(10)])
    assert await cache.get("market", "m3:summary") is None
    assert await cache.get("market", "m3:detail") is None
    assert await cache.get("market", "m4:detail") == {"m": 4}
    await client.aclose()


async def test_broadcast_applies_every_event_to_every_process_l1(
    redis_url: str, prefix: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = StreamKeys(prefix)
    l1s = [LocalCache(REGISTRY), LocalCache(REGISTRY)]
    consumers = [
        BroadcastConsumer(
            client,
            BroadcastConfig(stream="inval", namespaces=NS, block_ms=50),
            [LocalCacheSink(l1)],
            keys=keys,
        )
        for l1 in l1s
    ]
    for c in consumers:
        await c.run(until_idle=True)  # placed at the end of the stream
    for l1 in l1s:
        l1.set("prices", "a", 1)
        l1.set("prices", "b", 2)
    await publish(client, keys, [keys_event("prices", "a")])
    for c in consumers:
        await c.run(until_idle=True)
    for l1 in l1s:
        assert l1.get("prices", "a") is None
        assert l1.get("prices", "b") == 2
    await client.aclose()


@pytest.mark.fault
async def test_broadcast_resumes_after_a_cut_and_flushes_when_trimmed_or_lost(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    direct = redis.asyncio.Redis.from_url(redis_server.url)
    cut_client = redis.asyncio.Redis.from_url(
        proxy.url_for(redis_server.url), socket_timeout=1, retry=None
    )
    keys = StreamKeys("cb")
    rec = Recorder()
    config = BroadcastConfig(stream="inval", namespaces=NS, block_ms=50, max_staleness_s=60)
    l1 = BroadcastConsumer(cut_client, config, [rec.sink()], keys=keys)
    await publish(direct, keys, [keys_event("prices", "old")])
    await l1.run(until_idle=True)
    assert rec.applied == []  # starts at the end: its L1 was empty
    # A cut: events published meanwhile are replayed from the last position.
    task = asyncio.ensure_future(l1.run())
    await asyncio.sleep(0.2)
    proxy.cut()
    missed = [keys_event("prices", str(i)) for i in range(5)]
    await publish(direct, keys, missed)
    await asyncio.sleep(0.5)
    proxy.heal()
    await eventually(lambda: len(rec.applied) >= 5, within=10, what="the missed events replayed")
    await l1.stop()
    await task
    assert rec.applied == [e.event_id for e in missed]
    assert rec.reasons() == {}
    # Trimmed past its position while it was away: one flush.
    await publish(direct, keys, [keys_event("prices", str(i)) for i in range(10)])
    await direct.xtrim(keys.stream("inval"), maxlen=1, approximate=False)
    await l1.run(until_idle=True)
    assert rec.reasons() == {FlushReason.TRIMMED: 1}
    await l1.run(until_idle=True)
    assert rec.reasons() == {FlushReason.TRIMMED: 1}
    # The stream lost (a restart without persistence): one flush, and it follows the new stream.
    redis_server.restart()
    await direct.aclose()
    direct = redis.asyncio.Redis.from_url(redis_server.url)
    await l1.run(until_idle=True)
    new = keys_event("prices", "new")
    await publish(direct, keys, [new])
    await l1.run(until_idle=True)
    assert rec.reasons()[FlushReason.STREAM_LOST] == 1
    assert rec.applied[-1] == new.event_id
    await direct.aclose()
    await cut_client.aclose()


@pytest.mark.fault
async def test_broadcast_flushes_l1_when_disconnected_past_the_staleness_budget(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    client = redis.asyncio.Redis.from_url(
        proxy.url_for(redis_server.url), socket_timeout=0.5, retry=None
    )
    local = LocalCache(REGISTRY)
    config = BroadcastConfig(
        stream="inval", namespaces=NS, block_ms=50, max_staleness_s=0.5, backoff_cap_s=0.1
    )
    l1 = BroadcastConsumer(client, config, [LocalCacheSink(local)], keys=StreamKeys("cb"))
    await l1.run(until_idle=True)
    task = asyncio.ensure_future(l1.run())
    proxy.cut()
    local.set("prices", "x", 1)  # filled while unreachable: kept only within the budget
    await eventually(
        lambda: local.get("prices", "x") is None, within=10, what="L1 flushed past the budget"
    )
    assert l1.stats.flushes[FlushReason.STALE_BUDGET.value] == 1
    proxy.heal()
    await l1.stop()
    await task
    await client.aclose()
