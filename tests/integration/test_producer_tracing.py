"""The ``send <stream>`` PRODUCER span and the trace context written into each entry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from cachebus.contracts import StreamKeys, decode_fields
from cachebus.contracts.errors import PublishError
from cachebus.core.connection import RedisSettings
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def traced(
    redis_url: str, stream_keys: StreamKeys, provider: TracerProvider
) -> AsyncIterator[Producer]:
    async with Producer.from_url(
        redis_url,
        producer_name="api",
        keys=stream_keys,
        tracer_provider=provider,
        registry=REGISTRY,
    ) as producer:
        yield producer


def _traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _headers(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [dict(decode_fields(f).headers) for _, f in client.xrange(stream)]


async def test_a_publish_makes_one_send_span_with_semconv_attributes(
    traced: Producer, exporter: InMemorySpanExporter, redis_client: redis.Redis, redis_url: str
) -> None:
    entry_id = await traced.invalidate_keys("positions", ["1:all", "1:7"], reason="fill")
    (span,) = exporter.get_finished_spans()
    assert span.name == f"send {traced.stream_key}"
    assert span.kind is SpanKind.PRODUCER
    attrs = dict(span.attributes or {})
    host, port = RedisSettings.from_url(redis_url).address
    assert attrs["messaging.system"] == "redis"
    assert attrs["messaging.destination.name"] == traced.stream_key
    assert attrs["messaging.operation.type"] == "send"
    assert attrs["messaging.operation.name"] == "send"
    assert attrs["messaging.message.id"] == entry_id
    assert (attrs["server.address"], attrs["server.port"]) == (host, port)
    assert attrs["cachebus.namespace"] == "positions"
    assert attrs["cachebus.kind"] == "keys"
    assert attrs["cachebus.keys_count"] == 2
    (headers,) = _headers(redis_client, traced.stream_key)
    assert attrs["cachebus.event_id"] == headers["message_id"]
    assert headers["traceparent"] == _traceparent(span)


async def test_a_batch_makes_one_span_whose_context_every_entry_carries(
    traced: Producer, exporter: InMemorySpanExporter, redis_client: redis.Redis
) -> None:
    async with traced.batch() as batch:
        for i in range(5):
            batch.invalidate_keys("prices", [str(i)])
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["messaging.batch.message_count"] == 5
    assert {h["traceparent"] for h in _headers(redis_client, traced.stream_key)} == {
        _traceparent(span)
    }


async def test_the_send_span_is_a_child_of_the_callers_span(
    traced: Producer, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("PUT /positions") as parent:
        await traced.flush_namespace("positions")
    send = next(s for s in exporter.get_finished_spans() if s.name.startswith("send"))
    assert send.parent is not None and send.parent.span_id == parent.get_span_context().span_id


async def test_a_failed_publish_marks_its_span_as_an_error(
    traced: Producer, exporter: InMemorySpanExporter, redis_client: redis.Redis
) -> None:
    redis_client.set(traced.stream_key, "not a stream")
    with pytest.raises(PublishError):
        await traced.flush_namespace("prices")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "BackendError"


async def test_without_an_sdk_nothing_is_injected(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    async with Producer.from_url(
        redis_url, producer_name="api", keys=stream_keys, registry=REGISTRY
    ) as producer:
        await producer.flush_namespace("prices")
    (headers,) = _headers(redis_client, producer.stream_key)
    assert "traceparent" not in headers


async def test_without_an_sdk_an_upstream_trace_context_still_travels(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    upstream = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    async with Producer.from_url(
        redis_url, producer_name="api", keys=stream_keys, registry=REGISTRY
    ) as producer:
        with trace.use_span(NonRecordingSpan(upstream)):
            await producer.flush_namespace("prices")
    (headers,) = _headers(redis_client, producer.stream_key)
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
