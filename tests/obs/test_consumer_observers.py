"""The tracing and metrics observers on a real consumer, in one process, with the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import cachebus.consumers.tracing as tracing_module
from cachebus.consumers import (
    CompositeObserver,
    Consumer,
    ConsumerConfig,
    ConsumerMetrics,
    ConsumerObserver,
    TracingObserver,
)
from cachebus.consumers.metrics import pending_summary
from cachebus.consumers.plan import Delivered
from cachebus.contracts.keys import StreamKeys
from tests.consumer.helpers import NS, Recorder, flush_event, keys_event, publish
from tests.obs.otel_helpers import Telemetry


@pytest.fixture
def telemetry() -> Telemetry:
    t = Telemetry()
    yield t  # type: ignore[misc]
    t.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    await c.aclose()


def config(**overrides: Any) -> ConsumerConfig:
    options: dict[str, Any] = {
        "stream": "inval", "group": "svc", "consumer": "c1", "namespaces": NS, "block_ms": 100,
        "min_idle_ms": 1000, "claim_interval_s": 0.2, "housekeeping_interval_s": 0.2,
        "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_deliveries": 2,
    }  # fmt: skip
    options.update(overrides)
    return ConsumerConfig(**options)


def observed(
    client: redis.asyncio.Redis, keys: StreamKeys, recorder: Recorder, telemetry: Telemetry
) -> tuple[Consumer, ConsumerMetrics]:
    cfg = config()
    metrics = ConsumerMetrics.for_consumer(cfg, keys=keys, meter_provider=telemetry.meter_provider)
    tracing = TracingObserver.for_consumer(
        cfg, keys=keys, tracer_provider=telemetry.tracer_provider
    )
    consumer = Consumer(
        client, cfg, [recorder.sink()], keys=keys, observer=CompositeObserver(tracing, metrics)
    )
    return consumer, metrics


async def test_metrics_count_events_by_namespace_flushes_by_reason_and_the_delay(
    client: redis.asyncio.Redis, stream_keys: StreamKeys, telemetry: Telemetry
) -> None:
    # Given a consumer that created its group (a new group flushes: reason new_group)
    recorder = Recorder()
    consumer, metrics = observed(client, stream_keys, recorder, telemetry)
    await consumer.run(until_idle=True)
    # When three prices events and one market flush are published and consumed
    events = [keys_event("prices", str(i)) for i in range(3)] + [flush_event("market")]
    await publish(client, stream_keys, events)
    await consumer.run(until_idle=True)
    # Then the counters say so, with low-cardinality labels only
    assert telemetry.value("messaging.client.consumed.messages") == 4
    assert telemetry.value("cachebus.consumer.applied", cachebus__namespace="prices") == 3
    assert telemetry.value("cachebus.consumer.applied", cachebus__kind="flush") == 1
    assert telemetry.value("cachebus.consumer.acked") == 4
    assert telemetry.value("cachebus.consumer.flushes", cachebus__flush_reason="new_group") == 1
    assert telemetry.value("cachebus.consumer.publish_to_apply") == 4
    (_, delay), *_ = telemetry.points("cachebus.consumer.publish_to_apply")
    assert 0 <= delay.sum < 4 * 30  # seconds; the four events were created moments ago
    # And the gauges show a group caught up, once XPENDING was sampled
    metrics.observe_pending(await pending_summary(client, stream_keys.stream("inval"), "svc"))
    assert telemetry.value("cachebus.consumer.lag") == 0
    assert telemetry.value("cachebus.consumer.pending") == 0
    assert telemetry.value("cachebus.consumer.oldest_pending_age") == 0
    for attributes, _ in telemetry.points("cachebus.consumer.applied"):
        assert set(attributes) <= {
            "messaging.system", "messaging.destination.name", "messaging.consumer.group.name",
            "cachebus.namespace", "cachebus.kind",
        }  # fmt: skip


async def test_a_dead_letter_gets_an_error_process_span_a_counter_and_a_poison_flush(
    client: redis.asyncio.Redis, stream_keys: StreamKeys, telemetry: Telemetry
) -> None:
    # Given a consumer whose sink refuses one event (max_deliveries 2)
    bad = keys_event("prices", "boom")
    recorder = Recorder(fail_on={bad.event_id})
    consumer, _ = observed(client, stream_keys, recorder, telemetry)
    await consumer.run(until_idle=True)
    # When that event and a good one are consumed
    await publish(client, stream_keys, [bad, keys_event("prices", "ok")])
    await consumer.run(until_idle=True)
    # Then the refused event was dead-lettered, with an error span and a counter
    assert consumer.stats.dead_lettered == 1
    (failed,) = [s for s in telemetry.spans("process ") if s.status.status_code is StatusCode.ERROR]
    assert failed.kind is SpanKind.CONSUMER
    assert dict(failed.attributes or {})["error.type"] == "apply"
    assert telemetry.value("cachebus.consumer.dead_lettered", cachebus__reason="apply") == 1
    assert telemetry.value("cachebus.consumer.flushes", cachebus__flush_reason="poison") == 1
    (flush,) = [
        s
        for s in telemetry.spans("flush ")
        if dict(s.attributes or {})["cachebus.flush_reason"] == "poison"
    ]
    assert dict(flush.attributes or {})["cachebus.namespaces"] == ("prices",)


async def test_an_undecodable_entry_is_counted_and_traced_as_a_decode_dead_letter(
    client: redis.asyncio.Redis, stream_keys: StreamKeys, telemetry: Telemetry
) -> None:
    recorder = Recorder()
    consumer, _ = observed(client, stream_keys, recorder, telemetry)
    await consumer.run(until_idle=True)
    await client.xadd(stream_keys.stream("inval"), {"__data__": b"not json"})
    await consumer.run(until_idle=True)
    (receive,) = telemetry.spans("receive ")
    assert dict(receive.attributes or {})["messaging.batch.message_count"] == 1
    (failed,) = telemetry.spans("process ")
    assert str(dict(failed.attributes or {})["error.type"]).startswith("decode:")
    assert telemetry.value("cachebus.consumer.dead_lettered") == 1


def test_without_an_sdk_the_tracing_observer_does_no_per_event_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a tracing observer on a no-op provider and a batch of 500 traced events
    observer = TracingObserver("cb:stream:inval", tracer_provider=trace.NoOpTracerProvider())
    calls = 0
    real = tracing_module.creation_context

    def counting(item: Delivered) -> Any:
        nonlocal calls
        calls += 1
        return real(item)

    monkeypatch.setattr(tracing_module, "creation_context", counting)
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    batch = [Delivered(f"1-{i}", keys_event("prices", str(i)), headers) for i in range(500)]
    # When the hooks of one batch run
    observer.on_received("new", 500, batch, 1.0, 1.1)
    observer.on_applied(batch, 1.1, 1.2)
    observer.on_acked([d.entry_id for d in batch], 1.2, 1.3)
    # Then at most one event's headers were even looked at
    assert calls <= 1


class _Exploding(ConsumerObserver):
    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        raise RuntimeError("observer bug")

    def on_received(self, *args: Any) -> None:
        raise RuntimeError("observer bug")


async def test_an_observer_that_raises_stops_neither_the_others_nor_the_consumer(
    client: redis.asyncio.Redis, stream_keys: StreamKeys, telemetry: Telemetry
) -> None:
    cfg = config()
    metrics = ConsumerMetrics.for_consumer(
        cfg, keys=stream_keys, meter_provider=telemetry.meter_provider
    )
    recorder = Recorder()
    consumer = Consumer(
        client, cfg, [recorder.sink()], keys=stream_keys,
        observer=CompositeObserver(_Exploding(), metrics),
    )  # fmt: skip
    await consumer.run(until_idle=True)
    await publish(client, stream_keys, [keys_event("prices", "1"), keys_event("market", "2")])
    await asyncio.wait_for(consumer.run(until_idle=True), 10)
    assert len(recorder.applied) == 2
    assert telemetry.value("cachebus.consumer.applied") == 2


def test_a_large_batch_records_an_even_spread_of_delays_oldest_and_newest_included(
    telemetry: Telemetry,
) -> None:
    metrics = ConsumerMetrics("cb:stream:inval", group="g", meter_provider=telemetry.meter_provider)
    batch = [Delivered(f"1-{i}", keys_event("prices", str(i))) for i in range(1000)]
    old = Delivered("0-1", keys_event("prices", "old").model_copy(update={"created_at_ms": 1}))
    metrics.on_applied([old, *batch], 1.0, 2.0)
    assert telemetry.value("cachebus.consumer.applied") == 1001
    ((_, delays),) = telemetry.points("cachebus.consumer.publish_to_apply")
    assert delays.count == 32
    assert delays.max > 1_000_000  # the oldest event (created in 1970) is among them
