"""Interop with FastStream both ways, on real Redis, with its OpenTelemetry middleware."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
import redis
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.opentelemetry import RedisTelemetryMiddleware
from faststream.redis.parser import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cachebus.contracts import (
    EventFactory,
    KeysInvalidated,
    PatternInvalidated,
    StreamKeys,
    decode_fields,
)
from cachebus.contracts.events import InvalidationEvent
from cachebus.core.connection import RedisSettings
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY

pytestmark = pytest.mark.timeout(60)


class JSONEnvelopeFormat(MessageFormat):
    """FastStream writing the JSON envelope instead of its binary frame."""

    @classmethod
    async def encode(cls, **kwargs: Any) -> bytes:
        built = await cls.build(**kwargs)
        return json.dumps({"data": built.data.decode(), "headers": built.headers}).encode()

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        return BinaryMessageFormatV1.parse(data)


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traced_broker(url: str, provider: TracerProvider) -> RedisBroker:
    return RedisBroker(url, middlewares=[RedisTelemetryMiddleware(tracer_provider=provider)])


def only(spans: Sequence[ReadableSpan], kind: SpanKind, prefix: str) -> ReadableSpan:
    (found,) = [s for s in spans if s.kind is kind and s.name.startswith(prefix)]
    return found


async def test_a_faststream_handler_receives_our_events_typed_and_in_the_producers_trace(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    provider, exporter = tracing()
    broker = RedisBroker(
        redis_url, middlewares=[RedisTelemetryMiddleware(tracer_provider=provider)]
    )
    received: asyncio.Queue[KeysInvalidated | PatternInvalidated] = asyncio.Queue()

    @broker.subscriber(stream=StreamSub(stream_keys.stream("inval"), last_id="0"))
    async def on_invalidation(event: InvalidationEvent) -> None:  # type: ignore[valid-type]
        await received.put(event)

    producer = Producer(
        RedisSettings.from_url(redis_url), producer_name="api", keys=stream_keys,
        tracer_provider=provider, registry=REGISTRY
    )  # fmt: skip
    async with broker:
        await broker.start()
        with provider.get_tracer("app").start_as_current_span("PUT /positions/42"):
            await producer.invalidate_keys("positions", ["42:all"], reason="fill")
        await producer.invalidate_pattern("positions", "43:*", reason="close")
        first = await asyncio.wait_for(received.get(), 10)
        second = await asyncio.wait_for(received.get(), 10)
        await asyncio.sleep(0.1)  # let the middleware end its process spans

    assert isinstance(first, KeysInvalidated) and first.keys == ("42:all",)
    assert isinstance(second, PatternInvalidated) and second.pattern == "43:*"
    spans = exporter.get_finished_spans()
    app = only(spans, SpanKind.INTERNAL, "PUT")
    send = next(s for s in spans if s.kind is SpanKind.PRODUCER and s.attributes
                and s.attributes.get("cachebus.event_id") == first.event_id)  # fmt: skip
    process = next(s for s in spans if s.kind is SpanKind.CONSUMER and s.attributes
                   and s.attributes.get("messaging.message.id") == first.event_id)  # fmt: skip
    assert send.context.trace_id == app.context.trace_id == process.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id


async def test_our_decoder_reads_what_faststream_publishes_in_its_binary_format(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    provider, exporter = tracing()
    broker = RedisBroker(
        redis_url, middlewares=[RedisTelemetryMiddleware(tracer_provider=provider)]
    )
    event = EventFactory("fs-service", registry=REGISTRY).keys_event(
        "market", ["m1:summary"], reason="resolved"
    )
    stream = stream_keys.stream("inval")
    async with broker:
        await broker.connect()
        await broker.publish(event, stream=stream, headers={"x-tenant": "acme"})
    ((entry_id, fields),) = redis_client.xrange(stream)
    assert fields[b"__data__"].startswith(b"\x89BIN")
    decoded = decode_fields(fields, entry_id=entry_id, registry=REGISTRY)
    assert decoded.event == event
    assert decoded.headers["x-tenant"] == "acme"
    # FastStream's "create" and "publish" PRODUCER spans share one trace: the entry carries it
    (trace_id,) = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert decoded.traceparent is not None
    assert decoded.traceparent.split("-")[1] == f"{trace_id:032x}"


async def test_our_decoder_reads_what_faststream_publishes_as_a_json_envelope(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(redis_url, message_format=JSONEnvelopeFormat)
    event = EventFactory("fs-service", registry=REGISTRY).flush("prices", reason="feed restart")
    stream = stream_keys.stream("inval")
    async with broker:
        await broker.connect()
        await broker.publish(event, stream=stream, correlation_id="corr-1")
    ((_, fields),) = redis_client.xrange(stream)
    envelope = json.loads(fields[b"__data__"])
    assert isinstance(envelope["data"], str)
    decoded = decode_fields(fields)
    assert decoded.event == event
    assert decoded.headers["correlation_id"] == "corr-1"
