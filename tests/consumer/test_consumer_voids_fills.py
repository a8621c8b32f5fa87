"""Invalidations applied by a consumer void the fills they race with, like local ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig, RedisCacheSink
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY


@pytest.fixture
async def service(
    redis_url: str, keyspace: KeySpace, stream_keys: StreamKeys
) -> AsyncIterator[tuple[Cache, Consumer, Producer]]:
    """The service's cache, its consumer (running) and another service's producer."""
    client = redis.asyncio.Redis.from_url(redis_url)
    producer = Producer.from_url(
        redis_url, producer_name="api", keys=stream_keys, registry=REGISTRY
    )
    async with Cache.from_url(redis_url, keyspace) as cache:
        config = ConsumerConfig(
            stream="inval",
            group=keyspace.scope,
            consumer="c1",
            namespaces=frozenset({"positions"}),
            block_ms=50,
            min_idle_ms=1000,
        )
        consumer = Consumer(
            client, config, [RedisCacheSink(Cache(client, keyspace))], keys=stream_keys
        )
        task = asyncio.create_task(consumer.run())
        await _until(lambda: consumer.health().ready)
        yield cache, consumer, producer
        await consumer.stop()
        await task
    await producer.aclose()
    await client.aclose()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["keys", "pattern", "flush"])
async def test_a_fill_racing_a_consumed_invalidation_is_refused(
    service: tuple[Cache, Consumer, Producer], kind: str
) -> None:
    cache, consumer, producer = service
    source = {"5:all": "old"}
    loaded, release = asyncio.Event(), asyncio.Event()

    async def loader() -> str:
        value = source["5:all"]
        loaded.set()
        await release.wait()
        return value

    fill = asyncio.create_task(cache.get_or_set("positions", "5:all", loader))
    await asyncio.wait_for(loaded.wait(), 5)
    source["5:all"] = "new"
    if kind == "keys":
        await producer.invalidate_keys("positions", ["5:all"], reason="trade")
    elif kind == "pattern":
        await producer.invalidate_pattern("positions", "5:*", reason="close")
    else:
        await producer.flush_namespace("positions", reason="resync")
    await _until(lambda: consumer.stats.acked >= 1)  # applied, then acked
    release.set()
    assert await fill == "old"
    assert cache.stats.refused_fills == 1
    assert await cache.get("positions", "5:all") is None
    assert await cache.get_or_set("positions", "5:all", _load(source, "5:all")) == "new"


def _load(source: dict[str, str], ident: str) -> Callable[[], Awaitable[str]]:
    async def load() -> str:
        return source[ident]

    return load
