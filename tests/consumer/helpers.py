"""Shared helpers for consumer tests: publish raw events, run consumers, record applications."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis.asyncio

from cachebus.consumers import CallbackSink, Consumer, ConsumerConfig
from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Delivered
from cachebus.contracts.codec import encode_event
from cachebus.contracts.events import KeysInvalidated, NamespaceFlushed, PatternInvalidated
from cachebus.contracts.keys import StreamKeys

NS = frozenset({"prices", "market"})


def keys_event(ns: str, *ids: str, producer: str = "test") -> KeysInvalidated:
    return KeysInvalidated(namespace=ns, keys=tuple(ids), producer=producer)


def pattern_event(ns: str, pattern: str) -> PatternInvalidated:
    return PatternInvalidated(namespace=ns, pattern=pattern, producer="test")


def flush_event(ns: str) -> NamespaceFlushed:
    return NamespaceFlushed(namespace=ns, producer="test")


async def publish(
    client: redis.asyncio.Redis, keys: StreamKeys, events: Iterable[object], stream: str = "inval"
) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(keys.stream(stream), encode_event(event))  # type: ignore[arg-type]
    return [x.decode() if isinstance(x, bytes) else x for x in await pipe.execute()]


@dataclass
class Recorder:
    """A callback sink's memory: every applied event id, and every flush with its reason."""

    applied: list[str] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)
    flushes: list[tuple[frozenset[str], FlushReason]] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)
    delay_s: float = 0.0

    async def on_event(self, item: Delivered) -> None:
        if item.event.event_id in self.fail_on:
            raise RuntimeError(f"refusing {item.event.event_id}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.applied.append(item.event.event_id)
        self.entry_ids.append(item.entry_id)

    async def on_flush(self, namespaces: frozenset[str], reason: FlushReason) -> None:
        self.flushes.append((namespaces, reason))

    def sink(self, dedupe_window: int = 4096) -> CallbackSink:
        return CallbackSink(self.on_event, self.on_flush, dedupe_window=dedupe_window)

    def reasons(self) -> Counter[FlushReason]:
        return Counter(reason for _, reason in self.flushes)


def make_consumer(
    client: redis.asyncio.Redis,
    keys: StreamKeys,
    recorder: Recorder,
    *,
    consumer: str = "c1",
    group: str = "svc",
    **overrides: object,
) -> Consumer:
    options: dict[str, object] = {
        "stream": "inval",
        "group": group,
        "consumer": consumer,
        "namespaces": NS,
        "block_ms": 100,
        "min_idle_ms": 1000,
        "claim_interval_s": 0.2,
        "housekeeping_interval_s": 0.2,
        "backoff_base_s": 0.02,
        "backoff_cap_s": 0.2,
    }
    options.update(overrides)
    config = ConsumerConfig(**options)  # type: ignore[arg-type]
    return Consumer(client, config, [recorder.sink()], keys=keys)


async def run_for(consumer: Consumer, seconds: float) -> None:
    task = asyncio.ensure_future(consumer.run())
    await asyncio.sleep(seconds)
    await consumer.stop()
    await task
