"""``cachebus bench consume``: drain one backlog three ways, on a scratch redis-server.

The same ``--events`` entries (one key each, every key really cached) are drained, each
contender with its own consumer group created at ``0``, applying UNLINKs:

* ``cachebus``: our runtime (decode and validate every event, coalesce the batch, one UNLINK
  round trip per batch through the cache core, one XACK per batch);
* ``raw``: XREADGROUP COUNT n + pipelined UNLINK per event + XACK, reading the keys field of
  the envelope without validating anything;
* ``raw-batch``: the floor for a Python consumer, the same round trips as ours: XREADGROUP
  COUNT n, the envelope decoded with orjson to find the keys (not validated), one UNLINK of
  the batch's keys, one XACK. ``raw_batch_ratio`` (ours over it) is the catch-up target;
* ``raw-validating``: raw-batch with one change, the envelopes decoded and validated by our
  own batch decoder (:func:`~cachebus.contracts.codec.decode_entries`, the keys taken from the
  validated events): the floor for a consumer that validates every event, as ours does.
  ``validating_floor_ratio`` (ours over it) is what our runtime costs beyond validation;
* ``faststream``: a FastStream batch ``StreamSub`` (max_records n) whose handler is declared
  with our event model, ``list[KeysInvalidated]``, so FastStream validates every event as ours
  does, and pipelines the UNLINKs (FastStream acks the batch). ``faststream_ratio`` is
  measured against it: the same work, a different runtime;
* ``faststream-dict``: the same with ``list[dict]`` (no validation), shown for reference.

With ``--observers``, two more: our runtime with the tracing and metrics observers installed,
once with the OpenTelemetry API alone (no SDK: what a service pays when it does not export
telemetry) and once with the SDK recording every span and metric (spans go to an exporter that
drops them, so the cost measured is ours and the SDK's, not an exporter's network).

Repeats are interleaved so the three see the same machine state; medians are reported.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio
import typer
from rich.console import Console
from rich.progress import Progress

from cachebus.bench import bench_app
from cachebus.bench._report import emit
from cachebus.bench.registry import bench_registry
from cachebus.consumers import ConsumerObserver
from cachebus.contracts.codec import DecodedEntry, decode_entries, encode_event
from cachebus.contracts.events import KeysInvalidated
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.service import ConsumerService
from cachebus.testing import RedisServer

__all__ = ["consume"]

PREFIX = "bench"
STREAMS = StreamKeys(PREFIX)
STREAM = STREAMS.stream("inval")
NAMESPACE = "items"


def _space(group: str) -> KeySpace:
    """The cache scope of a contender's group (a service's scope is its group)."""
    return KeySpace(prefix=PREFIX, scope=group, registry=bench_registry())


async def _load_backlog(client: redis.asyncio.Redis, events: int) -> None:
    for base in range(0, events, 2000):
        pipe = client.pipeline(transaction=False)
        for i in range(base, min(base + 2000, events)):
            event = KeysInvalidated(namespace=NAMESPACE, keys=(f"k{i}",), producer="bench")
            pipe.xadd(STREAM, encode_event(event))  # type: ignore[arg-type]
        await pipe.execute()


def _names(space: KeySpace, base: int, events: int) -> list[str]:
    return [space.key(NAMESPACE, f"k{i}") for i in range(base, min(base + 5000, events))]


async def _cache_every_key(client: redis.asyncio.Redis, space: KeySpace, events: int) -> None:
    for base in range(0, events, 5000):
        await client.mset(dict.fromkeys(_names(space, base, events), b"v"))


async def _remaining(client: redis.asyncio.Redis, space: KeySpace, events: int) -> int:
    left = 0
    for base in range(0, events, 5000):
        left += int(await client.exists(*_names(space, base, events)))
    return left


class _Done(ConsumerObserver):
    def __init__(self, target: int) -> None:
        self.target, self.acked, self.done = target, 0, asyncio.Event()

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None:
        self.acked += len(ids)
        if self.acked >= self.target:
            self.done.set()


def _telemetry(telemetry: str) -> dict[str, Any]:
    """The root's tracing and metrics: off, on the bare API, or on a recording SDK."""
    if telemetry == "none":
        return {"settings": {"traces": False, "metrics": False}}
    if telemetry == "api":
        return {"settings": {"traces": True, "metrics": True}}
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    class _Drop(SpanExporter):
        def export(self, spans: Any) -> Any:
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {
        "settings": {"traces": True, "metrics": True},
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
    }


async def _ours(url: str, group: str, events: int, count: int, telemetry: str = "none") -> float:
    # Our runtime as a service runs it: the composition root, its own pool (explicit
    # timeouts, hiredis command packing), the group's cache scope.
    done = _Done(events)
    options = _telemetry(telemetry)
    settings = {"prefix": PREFIX, "consumer": "c", "read_count": count, "block_ms": 100,
                "socket_timeout": 30.0, **options.pop("settings")}  # fmt: skip
    service = ConsumerService.from_url(
        url, registry=bench_registry(), service=group, namespaces=[NAMESPACE],
        observers=[done], settings=settings, **options,
    )  # fmt: skip
    started = time.perf_counter()
    async with service:
        await done.done.wait()
        elapsed = time.perf_counter() - started
    return elapsed


async def _raw(client: redis.asyncio.Redis, group: str, events: int, count: int) -> float:
    root = _space(group).root
    started = time.perf_counter()
    done = 0
    while done < events:
        reply: Any = await client.xreadgroup(group, "c", {STREAM: ">"}, count=count, block=100)
        if not reply:
            continue
        entries = reply[0][1]
        pipe = client.pipeline(transaction=False)
        ids = []
        for entry_id, fields in entries:
            payload = orjson.loads(orjson.loads(fields[b"__data__"])["data"])
            for ident in payload["keys"]:
                pipe.unlink(f"{root}{NAMESPACE}:{ident}")
            ids.append(entry_id)
        pipe.xack(STREAM, group, *ids)
        await pipe.execute()
        done += len(ids)
    return time.perf_counter() - started


def _blind_keys(entries: list[Any], root: str) -> list[str]:
    """``raw-batch``: the keys read from the envelope with orjson, nothing validated."""
    loads = orjson.loads
    return [
        root + ident
        for _, fields in entries
        for ident in loads(loads(fields[b"__data__"])["data"])["keys"]
    ]


def _validated_keys(entries: list[Any], root: str) -> list[str]:
    """``raw-validating``: every event decoded and validated by our batch decoder."""
    keys: list[str] = []
    for decoded in decode_entries(entries):
        if not isinstance(decoded, DecodedEntry):
            raise RuntimeError(f"the backlog holds an invalid entry: {decoded}")
        event = decoded.event
        assert isinstance(event, KeysInvalidated)
        keys += [root + ident for ident in event.keys]
    return keys


async def _raw_batch(
    client: redis.asyncio.Redis,
    group: str,
    events: int,
    count: int,
    keys_of: Callable[[list[Any], str], list[str]] = _blind_keys,
) -> float:
    """XREADGROUP COUNT n, the batch's keys (``keys_of``), one UNLINK, one XACK."""
    root = f"{_space(group).root}{NAMESPACE}:"
    started = time.perf_counter()
    done = 0
    while done < events:
        reply: Any = await client.xreadgroup(group, "c", {STREAM: ">"}, count=count, block=100)
        if not reply:
            continue
        entries = reply[0][1]
        await client.unlink(*keys_of(entries, root))
        await client.xack(STREAM, group, *[entry_id for entry_id, _ in entries])
        done += len(entries)
    return time.perf_counter() - started


async def _faststream(
    url: str, client: redis.asyncio.Redis, group: str, events: int, count: int, typed: bool
) -> float:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]
    root = _space(group).root
    finished = asyncio.Event()
    seen = 0

    async def unlink(keys: list[list[str]]) -> None:
        nonlocal seen
        pipe = client.pipeline(transaction=False)
        for ids in keys:
            for ident in ids:
                pipe.unlink(f"{root}{NAMESPACE}:{ident}")
        await pipe.execute()
        seen += len(keys)
        if seen >= events:
            finished.set()

    sub = StreamSub(
        STREAM, group=group, consumer="c", batch=True, max_records=count, polling_interval=100
    )
    if typed:

        @broker.subscriber(stream=sub)
        async def handle_typed(bodies: list[KeysInvalidated]) -> None:
            await unlink([list(body.keys) for body in bodies])

    else:

        @broker.subscriber(stream=sub)
        async def handle_dict(bodies: list[dict[str, Any]]) -> None:
            await unlink([body["keys"] for body in bodies])

    started = time.perf_counter()
    await broker.start()
    await finished.wait()
    elapsed = time.perf_counter() - started
    await broker.stop()
    # FastStream acks after the handler returns: wait for the last ack before the next run.
    for _ in range(100):
        if (await client.xpending(STREAM, group))["pending"] == 0:
            break
        await asyncio.sleep(0.01)
    return elapsed


async def _bench(
    events: int, count: int, repeats: int, observers: bool = False
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "cachebus": [],
        "raw": [],
        "raw-batch": [],
        "raw-validating": [],
        "faststream": [],
        "faststream-dict": [],
    }
    if observers:
        results.update({"cachebus+otel-api": [], "cachebus+otel-sdk": []})
    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=30, retry=None)
        await _load_backlog(client, events)
        contenders: dict[str, Callable[[str], Awaitable[float]]] = {
            "cachebus": lambda g: _ours(server.url, g, events, count),
            "raw": lambda g: _raw(client, g, events, count),
            "raw-batch": lambda g: _raw_batch(client, g, events, count),
            "raw-validating": lambda g: _raw_batch(client, g, events, count, _validated_keys),
            "faststream": lambda g: _faststream(server.url, client, g, events, count, True),
            "faststream-dict": lambda g: _faststream(server.url, client, g, events, count, False),
        }
        if observers:
            contenders["cachebus+otel-api"] = lambda g: _ours(server.url, g, events, count, "api")
            contenders["cachebus+otel-sdk"] = lambda g: _ours(server.url, g, events, count, "sdk")
        run = 0
        progress = Progress(console=Console(stderr=True), transient=True)
        task = progress.add_task("draining", total=repeats * len(contenders))
        progress.start()
        for repeat in range(repeats):
            order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
            for name in order:
                progress.update(task, description=f"{name} (repeat {repeat + 1}/{repeats})")
                progress.advance(task)
                run += 1
                group = f"{name.replace('+', '.')}-{run}"
                await _cache_every_key(client, _space(group), events)
                await client.xgroup_create(STREAM, group, id="0")
                # The same heap for every contender: earlier runs' garbage out, the rest frozen.
                gc.collect()
                gc.freeze()
                elapsed = await contenders[name](group)
                left = await _remaining(client, _space(group), events)
                if left:
                    raise RuntimeError(f"{name} left {left} of {events} keys in the cache")
                results[name].append(events / elapsed)
                await client.xgroup_destroy(STREAM, group)
        progress.stop()
        await client.aclose()
    return results


@bench_app.command("consume")
def consume(
    events: int = typer.Option(100_000, help="Backlog size (more for steadier figures)."),
    count: int = typer.Option(1000, help="Entries per read, for every contender."),
    repeats: int = typer.Option(3, help="Interleaved repeats; medians are reported."),
    observers: bool = typer.Option(
        False, help="Also run with the tracing and metrics observers (API only; SDK)."
    ),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Drain a backlog: our runtime vs raw XREADGROUP loops vs FastStream batch StreamSub."""
    results = asyncio.run(_bench(events, count, repeats, observers))
    med = {name: statistics.median(values) for name, values in results.items()}
    rows = [
        (name, med[name], min(values), max(values), med[name] / med["cachebus"])
        for name, values in results.items()
    ]
    summary = {
        "events": events,
        "count": count,
        "repeats": repeats,
        "cachebus_eps": round(med["cachebus"]),
        "raw_eps": round(med["raw"]),
        "faststream_eps": round(med["faststream"]),
        "raw_batch_eps": round(med["raw-batch"]),
        "raw_ratio": round(med["cachebus"] / med["raw"], 3),
        # The catch-up targets: >= 0.8 of the raw-batch floor, >= 2.5x FastStream validating.
        "raw_batch_ratio": round(med["cachebus"] / med["raw-batch"], 3),
        "faststream_ratio": round(med["cachebus"] / med["faststream"], 3),
        "faststream_dict_eps": round(med["faststream-dict"]),
        "raw_validating_eps": round(med["raw-validating"]),
        # What validating every event costs the floor, and what our runtime adds beyond it.
        "validating_over_raw_batch": round(med["raw-validating"] / med["raw-batch"], 3),
        "validating_floor_ratio": round(med["cachebus"] / med["raw-validating"], 3),
    }
    if observers:
        summary.update(
            {
                "otel_api_eps": round(med["cachebus+otel-api"]),
                "otel_sdk_eps": round(med["cachebus+otel-sdk"]),
                # Throughput kept with the observers on, relative to the same run without.
                "otel_api_ratio": round(med["cachebus+otel-api"] / med["cachebus"], 3),
                "otel_sdk_ratio": round(med["cachebus+otel-sdk"] / med["cachebus"], 3),
            }
        )
    emit(
        f"consume: drain {events:,} events (COUNT {count}), events/s",
        ["contender", "median ev/s", "min", "max", "vs cachebus"],
        rows,
        summary,
        as_json=json_out,
        notes=[
            "cachebus and faststream validate every event into the same pydantic model;",
            "raw, raw-batch and faststream-dict read the keys field blindly;",
            "raw-validating is raw-batch validating every event with our decoder.",
        ],
    )
