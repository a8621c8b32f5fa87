"""Partitioned streams on a real Redis Cluster (and on one Redis): routing, 0 lost, order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from cachebus.consumers import (
    CallbackSink,
    Consumer,
    ConsumerConfig,
    PartitionedConsumer,
    RedisCacheSink,
)
from cachebus.consumers.plan import Delivered
from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.producers import Producer
from cachebus.testing.cluster import RedisClusterHarness
from tests.harness.registry import REGISTRY

pytestmark = pytest.mark.cluster
NAMESPACES = frozenset({"prices", "positions"})


@pytest.fixture
async def cluster_client(
    redis_cluster: RedisClusterHarness,
) -> AsyncIterator[redis.asyncio.RedisCluster]:
    client = redis_cluster.async_client()
    yield client
    await client.aclose()


class Applied:
    """What a callback sink saw: per (namespace, id), the reasons of its events in order."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.event_ids: list[str] = []

    async def on_event(self, item: Delivered) -> None:
        event = item.event
        self.event_ids.append(event.event_id)
        for ident in getattr(event, "keys", ()):
            self.by_key[(event.namespace, ident)].append(int(event.reason))

    def sink(self) -> CallbackSink:
        return CallbackSink(self.on_event)


def config(**overrides: object) -> ConsumerConfig:
    options: dict[str, object] = {
        "stream": "inval",
        "group": "svc",
        "consumer": "c1",
        "namespaces": NAMESPACES,
        "block_ms": 100,
        "claim_interval_s": 0.5,
        "housekeeping_interval_s": 0.5,
    }
    options.update(overrides)
    return ConsumerConfig(**options)  # type: ignore[arg-type]


async def test_events_across_partitions_are_all_applied_in_order_per_key(
    redis_cluster: RedisClusterHarness, cluster_client: redis.asyncio.RedisCluster, prefix: str
) -> None:
    keys = StreamKeys(prefix, partitions=3)
    applied = Applied()
    consumer = PartitionedConsumer(cluster_client, config(), [applied.sink()], keys=keys)
    await consumer.run(until_idle=True)  # the groups exist before anything is published
    producer = Producer(cluster_client, producer_name="bot", keys=keys, registry=REGISTRY)
    # 150 keys, 8 versions each, one event per key and version, plus events naming several.
    async with producer.batch() as batch:
        for version in range(8):
            for k in range(150):
                batch.invalidate_keys("prices", [str(k)], reason=str(version))
            batch.invalidate_keys("positions", [f"{u}:all" for u in range(12)], reason=str(version))
    await consumer.run(until_idle=True)
    # Then nothing is lost, and every key saw its versions in the order they were published.
    assert len(applied.by_key) == 150 + 12
    for versions in applied.by_key.values():
        assert versions == list(range(8))
    published = sum(len(entry.split(",")) for entry in batch.entry_ids)
    assert len(applied.event_ids) == published == consumer.stats.acked
    # Every partition got a share, each from its own primary.
    lengths = [await cluster_client.xlen(k) for k in producer.stream_keys]
    assert all(n > 0 for n in lengths) and sum(lengths) == published
    assert len({redis_cluster.primary_for(k).port for k in producer.stream_keys}) == 3
    # A keys event whose ids span partitions was split into pieces with derived ids.
    assert any("," in entry for entry in batch.entry_ids[150::151])
    assert consumer.stats.flushes == {"new_group": 3}
    assert consumer.health().ready


async def test_patterns_and_flushes_go_to_their_namespaces_home_partition(
    cluster_client: redis.asyncio.RedisCluster, prefix: str
) -> None:
    keys = StreamKeys(prefix, partitions=3)
    producer = Producer(cluster_client, producer_name="bot", keys=keys, registry=REGISTRY)
    home = keys.home_partition("positions")
    pattern_id = await producer.invalidate_pattern("positions", "7:*")
    flush_id = await producer.flush_namespace("positions")
    assert pattern_id.startswith(f"{home}/") and flush_id.startswith(f"{home}/")
    assert await cluster_client.xlen(producer.stream_keys[home]) == 2


async def test_a_partitioned_stream_feeds_a_cluster_cache_end_to_end(
    cluster_client: redis.asyncio.RedisCluster, prefix: str
) -> None:
    keys = StreamKeys(prefix, partitions=3)
    cache = Cache(cluster_client, KeySpace(prefix, "svc", registry=REGISTRY))
    consumer = PartitionedConsumer(cluster_client, config(), [RedisCacheSink(cache)], keys=keys)
    await consumer.run(until_idle=True)
    await cache.set_many("prices", {str(i): i for i in range(600)})
    await cache.set_many("positions", {f"{u}:{p}": p for u in range(30) for p in range(10)})
    producer = Producer(cluster_client, producer_name="bot", keys=keys, registry=REGISTRY)
    async with producer.batch() as batch:
        for i in range(0, 600, 2):
            batch.invalidate_keys("prices", [str(i)])
        batch.invalidate_pattern("positions", "2*:*")
    await consumer.run(until_idle=True)
    left = await cache.get_many("prices", [str(i) for i in range(600)])
    assert sorted(left, key=int) == [str(i) for i in range(1, 600, 2)]
    positions = await cache.get_many(
        "positions", [f"{u}:{p}" for u in range(30) for p in range(10)]
    )
    assert len(positions) == 300 - 11 * 10 and not any(k.startswith("2") for k in positions)


async def test_a_single_redis_works_with_any_partition_count(redis_url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=5)
    keys = StreamKeys(prefix, partitions=4)
    applied = Applied()
    consumer = PartitionedConsumer(client, config(), [applied.sink()], keys=keys)
    await consumer.run(until_idle=True)
    producer = Producer(client, producer_name="bot", keys=keys, registry=REGISTRY)
    for version in range(3):
        await producer.publish_many(
            producer.factory.keys_event("prices", [str(k)], reason=str(version)) for k in range(40)
        )
    await consumer.run(until_idle=True)
    assert len(applied.by_key) == 40
    assert all(v == [0, 1, 2] for v in applied.by_key.values())
    assert len({k for k in producer.stream_keys}) == 4
    await client.aclose()


def test_a_plain_consumer_refuses_a_partitioned_layout(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(ContractError, match="partitions"):
        Consumer(client, config(), [CallbackSink(_ignore)], keys=StreamKeys("cb", partitions=3))
    with pytest.raises(Exception, match="partition 1 only"):
        PartitionedConsumer(
            client, config(), [CallbackSink(_ignore)], keys=StreamKeys("cb", 3, partition=1)
        )


async def _ignore(item: Delivered) -> None:
    await asyncio.sleep(0)


async def test_retention_trims_each_partition_on_its_own_primary(
    cluster_client: redis.asyncio.RedisCluster, prefix: str
) -> None:
    keys = StreamKeys(prefix, partitions=3)
    applied = Applied()
    consumer = PartitionedConsumer(
        cluster_client,
        config(retention=True, retention_interval_s=0.0),
        [applied.sink()],
        keys=keys,
    )
    await consumer.run(until_idle=True)
    producer = Producer(cluster_client, producer_name="bot", keys=keys, registry=REGISTRY)
    async with producer.batch() as batch:
        for k in range(900):
            batch.invalidate_keys("prices", [str(k)], reason="0")
    await consumer.run(until_idle=True)
    for part in consumer.consumers:
        part.housekeeping.run_soon(retention=True)  # housekeeping and retention, next read
    await consumer.run(until_idle=True)
    assert len(applied.by_key) == 900
    assert consumer.stats.trimmed_by_retention > 0
