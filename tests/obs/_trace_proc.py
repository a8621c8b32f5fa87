"""A producer or a consumer in its own process, each with the OpenTelemetry SDK and an in-memory
exporter; the finished spans are written to a JSON file for the test to read.

    python -m tests.obs._trace_proc produce URL PREFIX OUT.json
    python -m tests.obs._trace_proc consume URL PREFIX OUT.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import redis.asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cachebus.consumers import Consumer, ConsumerConfig, RedisCacheSink, TracingObserver
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY

NAMESPACES = frozenset({"positions", "market"})


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def dump(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": _hex(ctx.trace_id, 32),
        "span_id": _hex(ctx.span_id, 16),
        "parent_trace_id": _hex(span.parent.trace_id, 32) if span.parent else None,
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent else None,
        "links": [
            {
                "trace_id": _hex(link.context.trace_id, 32),
                "span_id": _hex(link.context.span_id, 16),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }


async def produce(url: str, prefix: str, provider: TracerProvider) -> dict[str, Any]:
    tracer = provider.get_tracer("app")
    async with Producer.from_url(
        url,
        producer_name="api",
        keys=StreamKeys(prefix),
        tracer_provider=provider,
        registry=REGISTRY,
    ) as producer:
        with tracer.start_as_current_span("PUT /positions/7", kind=SpanKind.SERVER):
            first = await producer.invalidate_keys("positions", ["7:all", "7:42"], reason="fill")
            second = await producer.flush_namespace("market", reason="relist")
    return {"entry_ids": [first, second]}


async def consume(url: str, prefix: str, provider: TracerProvider) -> dict[str, Any]:
    settings = RedisSettings.from_url(url, socket_timeout=5)
    pool = create_async_pool(settings)
    client = redis.asyncio.Redis(connection_pool=pool)
    keys = StreamKeys(prefix)
    config = ConsumerConfig(
        stream="inval", group="svc", consumer="svc-1", namespaces=NAMESPACES, block_ms=100
    )
    observer = TracingObserver.for_consumer(
        config, keys=keys, server=settings.address, tracer_provider=provider
    )
    cache = Cache(client, KeySpace(prefix=prefix, scope="svc", registry=REGISTRY))
    consumer = Consumer(client, config, [RedisCacheSink(cache)], keys=keys, observer=observer)
    await asyncio.wait_for(consumer.run(until_idle=True), timeout=30)
    stats = consumer.stats.as_dict()
    await client.aclose()
    await pool.aclose()
    return {"stats": stats}


def main() -> None:
    mode, url, prefix, out = sys.argv[1:5]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = produce if mode == "produce" else consume
    result = asyncio.run(run(url, prefix, provider))
    provider.shutdown()
    result["spans"] = [dump(s) for s in exporter.get_finished_spans()]
    Path(out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
