"""health(): the audit's metrics with verdicts, key counts by bounded SCAN sampling."""

from __future__ import annotations

import os
from collections.abc import Callable

from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig
from cachebus.core.health import Verdict
from cachebus.testing import RedisServer, ServerOptions


async def test_a_healthy_cache_reports_ok_metrics_and_exact_key_counts(
    redis_server_factory: Callable[..., RedisServer], keyspace: KeySpace
) -> None:
    server = redis_server_factory(ServerOptions(maxmemory="64mb", maxmemory_policy="allkeys-lru"))
    async with Cache.from_url(server.url, keyspace, max_connections=20) as cache:
        await cache.set_many("market", {f"{i}:summary": {"i": i} for i in range(30)})
        await cache.set_many("prices", {str(i): i for i in range(10)})
        await cache.flush_namespace("user")  # a generation key: not counted as a value
        for i in range(100):
            await cache.get("market", f"{i % 33}:summary")
        report = await cache.health()
    counts = {k.namespace: (k.count, k.exact) for k in report.key_counts}
    assert counts["market"] == (30, True) and counts["prices"] == (10, True)
    assert counts["user"] == (0, True)
    hit_rate = report.metric("hit_rate")
    assert hit_rate.value is not None and 0.85 < hit_rate.value < 0.95
    assert hit_rate.verdict is Verdict.OK
    memory = report.metric("memory")
    assert memory.verdict is Verdict.OK and memory.value is not None and memory.value < 0.2
    assert report.metric("evictions").verdict is Verdict.OK
    assert report.metric("latency_p95").value is not None
    assert report.metric("pool_connections").verdict is Verdict.OK
    assert report.server["maxmemory_policy"] == "allkeys-lru"
    assert report.as_dict()["metrics"]["memory"]["verdict"] == "ok"


async def test_a_cache_that_misses_and_evicts_raises_alerts(
    redis_server_factory: Callable[..., RedisServer], keyspace: KeySpace
) -> None:
    server = redis_server_factory(ServerOptions(maxmemory="3mb", maxmemory_policy="allkeys-lru"))
    async with Cache.from_url(server.url, keyspace) as cache:
        for start in range(0, 1000, 100):  # 10 MB of incompressible values into 3 MB
            values = {f"{i}:detail": os.urandom(10_000) for i in range(start, start + 100)}
            await cache.set_many("market", values)
        for i in range(200):
            await cache.get("prices", str(i))
        report = await cache.health()
    assert report.metric("hit_rate").verdict is Verdict.ALERT
    assert report.metric("evictions").verdict is Verdict.ALERT
    assert report.metric("memory").verdict in {Verdict.ALERT, Verdict.CRITICAL}
    assert report.verdict in {Verdict.ALERT, Verdict.CRITICAL}


async def test_key_counts_are_extrapolated_when_the_sample_budget_runs_out(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    sync = redis_server.client()
    pipe = sync.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(keyspace.key("positions", f"{i}:all"), b"v")
    pipe.execute()
    config = CacheConfig(health_scan_calls=2, scan_count=100)
    async with Cache.from_url(redis_server.url, keyspace, config) as cache:
        report = await cache.health()
    (positions,) = [k for k in report.key_counts if k.namespace == "positions"]
    assert positions.exact is False
    assert 2000 < positions.count < 12_000  # an estimate from ~200 keys seen of 5000
    sync.close()
