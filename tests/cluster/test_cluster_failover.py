"""Failover as a gap, on private clusters: a primary is killed, its replica takes over.

Replication is asynchronous, so the way to lose acknowledged writes on purpose is to stop the
replica (SIGSTOP) before writing, then kill the primary and let the stopped replica, resumed,
be promoted without those writes. Each test kills the primary of one shard of its own cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest
import redis.asyncio

from cachebus.consumers import CallbackSink, ConsumerConfig, PartitionedConsumer, RedisCacheSink
from cachebus.consumers.plan import Delivered
from cachebus.contracts.errors import BackendUnavailable, PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, CacheConfig
from cachebus.producers import Producer
from cachebus.testing import RedisServer
from cachebus.testing.cluster import RedisClusterHarness
from tests.harness.registry import REGISTRY

pytestmark = [pytest.mark.cluster, pytest.mark.fault, pytest.mark.slow]
NAMESPACES = frozenset({"prices"})
Connect = Callable[[RedisClusterHarness], redis.asyncio.RedisCluster]
IDS = [str(i) for i in range(300)]


def settled(cluster: RedisClusterHarness) -> None:
    """Every write so far has reached the replicas (so only what follows can be lost)."""
    for node in cluster.primaries():
        client = node.client()
        assert int(client.execute_command("WAIT", 1, 5000)) >= 1
        client.close()


def consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        stream="inval",
        group="svc",
        consumer="c1",
        namespaces=NAMESPACES,
        block_ms=100,
        claim_interval_s=0.3,
        housekeeping_interval_s=0.3,
        backoff_cap_s=0.3,
        min_idle_ms=30_000,
    )


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def publish_until_accepted(producer: Producer, event: Event, timeout: float = 20.0) -> str:
    """What a service does with a PublishError: publish the same event again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await producer.publish(event)
        except PublishError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def stale_keys(cache: Cache, truth: dict[str, int]) -> list[str]:
    """Keys cached with a value the database no longer has (a read that really reached Redis:
    right after a failover a read may degrade to all-misses, which proves nothing)."""
    for _ in range(100):
        degraded = cache.stats.degraded_reads
        got = await cache.get_many("prices", IDS)
        if cache.stats.degraded_reads == degraded:
            return [i for i, v in got.items() if v != truth[i]]
        await asyncio.sleep(0.2)
    raise AssertionError("the cache never answered a read")


def partition_served_by(cluster: RedisClusterHarness, keys: StreamKeys, node: RedisServer) -> int:
    for i, part in enumerate(keys.all_partitions()):
        if cluster.primary_for(part.stream("inval")).port == node.port:
            return i
    raise AssertionError(f"no partition on {node!r}")


async def test_a_failover_during_a_run_flushes_that_partitions_scope_and_nothing_is_stale(
    cluster_factory: Callable[..., RedisClusterHarness], cluster_clients: Connect, prefix: str
) -> None:
    # Given a cluster cache filled at version 0 and a consumer running on 3 partitions
    cluster = cluster_factory()
    stream_client, cache_client = cluster_clients(cluster), cluster_clients(cluster)
    keys = StreamKeys(prefix, partitions=3)
    cache = Cache(cache_client, KeySpace(prefix, "svc", registry=REGISTRY))
    seen: set[str] = set()

    async def record(item: Delivered) -> None:
        seen.add(item.event.event_id)

    consumer = PartitionedConsumer(
        stream_client,
        consumer_config(),
        [RedisCacheSink(cache), CallbackSink(record)],
        keys=keys,
    )
    task = asyncio.ensure_future(consumer.run())
    await wait_for(lambda: consumer.health().ready, 10, "consumer ready")
    truth = dict.fromkeys(IDS, 0)
    await cache.set_many("prices", truth, ttl=600)  # prices live 20 s: longer than a slow failover
    producer = Producer(stream_client, producer_name="svc-writer", keys=keys, registry=REGISTRY)
    primary = cluster.primary_for(keys.for_partition(1).stream("inval"))
    p = partition_served_by(cluster, keys, primary)
    await asyncio.sleep(1.0)  # housekeeping recorded who serves each partition
    settled(cluster)

    # When the service keeps writing while the primary of partition p dies unreplicated
    version = 0
    lost_window: list[str] = []
    after_failover: list[str] = []
    entries: list[str] = []
    failed_over = False

    async def write(k: str) -> None:
        nonlocal version
        version += 1
        truth[k] = version  # the database changed; now publish its invalidation
        event = producer.factory.keys_event("prices", [k], reason=str(version))
        entries.append(await publish_until_accepted(producer, event))
        (after_failover if failed_over else lost_window).append(event.event_id)

    replica = cluster.cut_replication(primary)
    try:
        for k in IDS[:120]:
            await write(k)
        cluster.kill(primary)
    finally:
        replica.resume()
    writer_done = asyncio.Event()

    async def keep_writing() -> None:
        for k in IDS[120:]:
            await write(k)
            await asyncio.sleep(0.005)
        writer_done.set()

    writer = asyncio.ensure_future(keep_writing())
    promoted = await asyncio.to_thread(cluster.wait_failover, primary, 30)
    failed_over = True
    await writer
    # Then the partition whose primary changed flushed, and only it
    await wait_for(
        lambda: consumer.consumers[p].stats.flushes["failover"] >= 1, 20, "failover flush"
    )
    assert promoted.port == replica.port
    others = [c.stats.flushes["failover"] for i, c in enumerate(consumer.consumers) if i != p]
    assert others == [0, 0]
    # And once caught up, nothing published after the failover is lost, nothing is stale
    await wait_for(lambda: set(after_failover) <= seen, 20, "events after failover applied")
    assert await stale_keys(cache, truth) == []
    # (the promoted replica really lacks entries the old primary had acknowledged)
    acknowledged = sum(1 for e in entries if e.startswith(f"{p}/"))
    assert await stream_client.xlen(keys.for_partition(p).stream("inval")) < acknowledged
    await consumer.stop()
    await task


async def test_entries_lost_while_the_consumer_was_down_are_covered_by_a_failover_flush(
    cluster_factory: Callable[..., RedisClusterHarness], cluster_clients: Connect, prefix: str
) -> None:
    # Given a consumer that ran once (it recorded which node serves each partition), then stopped
    cluster = cluster_factory()
    client = cluster_clients(cluster)
    keys = StreamKeys(prefix, partitions=3)
    cache = Cache(client, KeySpace(prefix, "svc", registry=REGISTRY))
    consumer = PartitionedConsumer(client, consumer_config(), [RedisCacheSink(cache)], keys=keys)
    await consumer.run(until_idle=True)
    truth = dict.fromkeys(IDS, 0)
    await cache.set_many("prices", truth, ttl=600)  # prices live 20 s: longer than a slow failover
    settled(cluster)
    primary = cluster.primary_for(keys.for_partition(2).stream("inval"))
    p = partition_served_by(cluster, keys, primary)
    routed = [i for i in IDS if keys.partition_of("prices", i) == p]
    # When invalidations are acknowledged by a primary that dies before replicating them
    producer = Producer(client, producer_name="svc-writer", keys=keys, registry=REGISTRY)
    replica = cluster.cut_replication(primary)
    try:
        for i in routed:
            truth[i] = 1
        entry_ids = await producer.publish_many(
            producer.factory.keys_event("prices", [i], reason="1") for i in routed
        )
        cluster.kill(primary)
    finally:
        replica.resume()
    await asyncio.to_thread(cluster.wait_failover, primary, 30)
    # Then the promoted replica has none of them: without a flush they would be stale forever
    assert len(entry_ids) == len(routed) > 50
    stream = keys.for_partition(p).stream("inval")
    for _ in range(100):
        with contextlib.suppress(redis.RedisError):
            assert await client.xlen(stream) == 0
            break
        await asyncio.sleep(0.1)
    before = repr(cache.stats)
    stale = await stale_keys(cache, truth)
    generation_key = KeySpace(prefix, "svc", registry=REGISTRY).generation_key("prices")
    assert len(stale) == len(routed), (
        f"hazard missing: {len(stale)} stale of {len(routed)}; cache stats before the read "
        f"{before}, after {cache.stats!r}; generation {await client.get(generation_key)!r}"
    )
    # And the restarted consumer sees another node serving partition p, and flushes
    await consumer.run(until_idle=True)
    assert consumer.consumers[p].stats.flushes["failover"] == 1
    assert sum(c.stats.flushes["failover"] for c in consumer.consumers) == 1
    assert await stale_keys(cache, truth) == []


async def test_pattern_invalidation_completes_across_a_failover_mid_scan(
    cluster_factory: Callable[..., RedisClusterHarness], cluster_clients: Connect, prefix: str
) -> None:
    # Given matching keys on every shard and a SCAN that takes many round trips
    cluster = cluster_factory()
    client = cluster_clients(cluster)
    keyspace = KeySpace(prefix, "svc", registry=REGISTRY)
    cache = Cache(client, keyspace, CacheConfig(scan_count=50, unlink_batch=100))
    for chunk in range(0, 6000, 1000):
        await cache.set_many("positions", {f"{u}:x": u for u in range(chunk, chunk + 1000)})
    await cache.set_many("market", {f"{u}:summary": u for u in range(300)})
    settled(cluster)
    # The shard scanned last (shards go in slot order), killed once it has served a few SCANs.
    victim = cluster.node(max(cluster.slots(), key=lambda s: s.start).port)
    probe = victim.client()

    def kill_mid_scan(seconds: float) -> None:
        if victim.running:
            calls = probe.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)
            if int(calls) >= 3:
                probe.close()
                cluster.kill(victim)

    cache._core.observe = kill_mid_scan  # type: ignore[method-assign]
    # When its primary dies mid-scan, the caller retries as the consumer would
    attempts = 0
    deadline = time.monotonic() + 40
    while True:
        attempts += 1
        try:
            result = await cache.invalidate_pattern("positions", "*:x", max_keys=1_000_000)
            break
        except BackendUnavailable:
            assert time.monotonic() < deadline, "pattern invalidation never completed"
            await asyncio.sleep(0.3)
    await asyncio.to_thread(cluster.wait_failover, victim, 30)
    # Then no match is left on any primary, the promoted replica included, and nothing else
    # was touched
    assert not victim.running and attempts >= 2
    assert not result.escalated
    match = keyspace.match("positions", "*:x")
    for node in cluster.primaries():
        direct = node.client()
        assert list(direct.scan_iter(match=match, count=1000)) == []
        direct.close()
    assert len(await cache.get_many("market", [f"{u}:summary" for u in range(300)])) == 300
