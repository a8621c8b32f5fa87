"""Producer metrics (semconv names) and the cache core's health as gauges with the audit's
thresholds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from cachebus.consumers import CacheHealthMetrics
from cachebus.consumers.cache_metrics import server_hit_rate
from cachebus.contracts import StreamKeys
from cachebus.contracts.errors import PublishError
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, HealthReport, HealthThresholds
from cachebus.core.health import Metric, Verdict
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY
from tests.obs.otel_helpers import Telemetry


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.close()


async def test_the_producer_counts_sent_events_and_times_each_round_trip(
    redis_url: str, stream_keys: StreamKeys, telemetry: Telemetry, redis_client: redis.Redis
) -> None:
    async with Producer.from_url(
        redis_url,
        producer_name="api",
        keys=stream_keys,
        meter_provider=telemetry.meter_provider,
        registry=REGISTRY,
    ) as producer:
        # Given one single publish and one batch of two
        await producer.invalidate_keys("prices", ["1"])
        async with producer.batch() as batch:
            batch.invalidate_keys("prices", ["2"])
            batch.flush_namespace("market")
        # When a publish fails (the stream key holds a string)
        redis_client.set(producer.stream_key, "not a stream")
        with pytest.raises(PublishError):
            await producer.flush_namespace("market")
    # Then three events were sent in two round trips, and one failed with its error type
    ok = {"error.type": None}
    sent = [(a, p.value) for a, p in telemetry.points("messaging.client.sent.messages")]
    assert sum(v for a, v in sent if a.get("error.type") == ok["error.type"]) == 3
    assert sum(v for a, v in sent if a.get("error.type") == "BackendError") == 1
    durations = dict(
        (a.get("error.type"), p.count)
        for a, p in telemetry.points("messaging.client.operation.duration")
    )
    assert durations == {None: 2, "BackendError": 1}
    for attributes, _ in telemetry.points("messaging.client.sent.messages"):
        assert attributes["messaging.destination.name"] == producer.stream_key
        assert attributes["messaging.operation.type"] == "send"


def _report(**values: float | None) -> HealthReport:
    verdicts = {"memory": Verdict.CRITICAL, "hit_rate": Verdict.UNKNOWN}
    metrics = tuple(
        Metric(name, value, "ratio", verdicts.get(name, Verdict.OK))
        for name, value in values.items()
    )
    server = {"keyspace_hits": 650, "keyspace_misses": 350, "used_memory": 1000, "evicted_keys": 7}
    return HealthReport(Verdict.CRITICAL, metrics, (), server=server)


def test_health_gauges_carry_values_levels_and_the_audits_thresholds(
    telemetry: Telemetry,
) -> None:
    gauges = CacheHealthMetrics("bot", meter_provider=telemetry.meter_provider)
    gauges.update(_report(memory=0.93, hit_rate=None, evictions=12.0))
    # The memory verdict (critical) is level 4; the server hit rate 65% is an alert (3)
    assert telemetry.value("cachebus.cache.memory.utilization") == pytest.approx(0.93)
    assert telemetry.value("cachebus.cache.health.level", cachebus__metric="memory") == 4
    assert telemetry.value("cachebus.cache.health.level", cachebus__metric="server_hit_rate") == 3
    assert telemetry.value("cachebus.cache.hit_ratio", cachebus__source="server") == 0.65
    assert telemetry.value("cachebus.cache.hit_ratio", cachebus__source="client") == 0
    assert telemetry.value("cachebus.cache.evicted_keys") == 7
    assert telemetry.value(
        "cachebus.cache.health.threshold", cachebus__metric="hit_rate", cachebus__level="alert"
    ) == pytest.approx(0.70)
    assert telemetry.value(
        "cachebus.cache.health.threshold", cachebus__metric="memory", cachebus__level="critical"
    ) == pytest.approx(0.90)


@pytest.mark.parametrize(
    ("hits", "misses", "verdict"),
    [
        (850, 150, Verdict.OK),
        (750, 250, Verdict.WARN),
        (600, 400, Verdict.ALERT),
        (5, 5, Verdict.UNKNOWN),
    ],
)
def test_the_server_hit_rate_is_judged_with_the_audit_thresholds(
    hits: int, misses: int, verdict: Verdict
) -> None:
    report = HealthReport(
        Verdict.OK, (), (), server={"keyspace_hits": hits, "keyspace_misses": misses}
    )
    assert server_hit_rate(report, HealthThresholds()).verdict is verdict


async def test_refresh_reads_a_real_caches_health(
    redis_url: str, keyspace: KeySpace, telemetry: Telemetry
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, keyspace)
    gauges = CacheHealthMetrics.for_cache(cache, meter_provider=telemetry.meter_provider)
    await cache.set("prices", "1", {"p": 1})
    report = await gauges.refresh(cache)
    await client.aclose()
    assert telemetry.value("cachebus.cache.memory.used") == report.server["used_memory"]
    levels = {a["cachebus.metric"] for a, _ in telemetry.points("cachebus.cache.health.level")}
    assert {"hit_rate", "memory", "evictions", "server_hit_rate"} <= levels
