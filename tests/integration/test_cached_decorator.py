"""``@cache.cached``: keys from arguments through the registry, lease-guarded fills, typed
values on hits as on misses, and ``.invalidate()`` published and applied by a consumer."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
from pydantic import BaseModel

from cachebus.consumers.config import ConsumerConfig
from cachebus.consumers.runtime import Consumer
from cachebus.consumers.sinks import RedisCacheSink
from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.keys import KeyRef, KeySpace, StreamKeys
from cachebus.core import Cache, RedisSettings, SyncCache
from cachebus.producers import Producer, SyncProducer
from cachebus.testing import eventually
from tests.harness.registry import REGISTRY


class Position(BaseModel):
    user_id: int
    size: float


@dataclasses.dataclass
class Price:
    market_id: str
    bid: float


@pytest.fixture
async def cache(redis_url: str, keyspace: KeySpace) -> AsyncIterator[Cache]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Cache(client, keyspace)
    await client.aclose()


@pytest.fixture
def sync_cache(redis_url: str, keyspace: KeySpace) -> Iterator[SyncCache]:
    client = redis.Redis.from_url(redis_url)
    yield SyncCache(client, keyspace)
    client.close()


async def test_a_call_is_cached_under_the_template_key_and_comes_back_typed(cache: Cache) -> None:
    calls: list[tuple[int, str]] = []

    @cache.cached("positions")
    async def position(user_id: int, view: str = "all") -> Position:
        calls.append((user_id, view))
        return Position(user_id=user_id, size=1.5)

    first = await position(42)
    second = await position(42)  # a hit: validated back into a Position, not a dict
    assert first == second == Position(user_id=42, size=1.5)
    assert isinstance(second, Position)
    assert calls == [(42, "all")]
    assert position.ref(42) == KeyRef("positions", "42:all")
    # The stored form is the model's JSON, readable by any service (and typed on demand).
    assert await cache.get("positions", "42:all") == {"user_id": 42, "size": 1.5}
    assert await cache.get("positions", "42:all", type=Position) == first
    assert await cache.get_many("positions", ["42:all", "43:all"], type=Position) == {
        "42:all": first
    }
    await position(42, view="open")
    assert calls[-1] == (42, "open")


async def test_keys_by_mapping_or_callable_and_refused_when_they_cannot_be_built(
    cache: Cache,
) -> None:
    @cache.cached("prices", key={"market_id": "market"}, ttl=5)
    async def price(market: str) -> Price:
        return Price(market, 0.5)

    @cache.cached("prices", key=lambda p: {"market_id": p.market_id})
    async def price_of(p: Price) -> float:
        return p.bid

    assert await price("m1") == Price("m1", 0.5)
    assert await cache.get("prices", "m1", type=Price) == Price("m1", 0.5)
    assert price_of.ref(Price("m2", 0.7)) == KeyRef("prices", "m2")

    with pytest.raises(ConfigError, match=r"no parameter \['mid'\]"):

        @cache.cached("prices", key={"market_id": "mid"})
        async def wrong(market: str) -> int:
            return 1

    with pytest.raises(ConfigError, match="view"):

        @cache.cached("positions")
        async def missing(user_id: int) -> int:
            return 1

    with pytest.raises(ConfigError, match="is not async"):
        cache.cached("prices")(lambda market_id: 1)

    with pytest.raises(ContractError, match="nosuch"):
        cache.cached("nosuch")

    @cache.cached("positions")
    async def separator(user_id: str, view: str) -> int:
        return 1

    with pytest.raises(ContractError, match="separator"):  # '4:2' would reach into user 4's ids
        await separator("4:2", "all")


async def test_concurrent_calls_load_once_and_a_late_fill_loses(cache: Cache) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    loads = 0

    @cache.cached("prices")
    async def price(market_id: str) -> Price:
        nonlocal loads
        loads += 1
        started.set()
        await release.wait()
        return Price(market_id, 0.1)

    calls = [asyncio.ensure_future(price("m1")) for _ in range(10)]
    await started.wait()
    await cache.delete("prices", "m1")  # an invalidation while the load is in flight
    release.set()
    assert await asyncio.gather(*calls) == [Price("m1", 0.1)] * 10
    assert loads == 1
    assert cache.stats.refused_fills == 1  # the value loaded before it never lands
    assert await cache.get("prices", "m1") is None


async def test_a_value_of_an_older_shape_is_a_miss_and_is_loaded_again(cache: Cache) -> None:
    await cache.set("positions", "7:all", {"user": 7})  # what an older version of the code cached

    @cache.cached("positions")
    async def position(user_id: int, view: str = "all") -> Position:
        return Position(user_id=user_id, size=2.0)

    assert await cache.get("positions", "7:all", type=Position) is None
    assert await position(7) == Position(user_id=7, size=2.0)
    assert cache.stats.invalid == 2
    assert await cache.get("positions", "7:all") == {"user_id": 7, "size": 2.0}


async def test_invalidate_publishes_and_a_consumer_drops_the_entry(
    redis_url: str, cache: Cache, stream_keys: StreamKeys
) -> None:
    producer = Producer(
        RedisSettings.from_url(redis_url), producer_name="api", keys=stream_keys, registry=REGISTRY
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    consumer = Consumer(
        client,
        ConsumerConfig("inval", "svc", namespaces={"prices"}, block_ms=100),
        [RedisCacheSink(cache)],
        keys=stream_keys,
    )
    running = asyncio.ensure_future(consumer.run())
    version = 1

    @cache.cached("prices", producer=producer, reason="price moved")
    async def price(market_id: str) -> Price:
        return Price(market_id, float(version))

    try:
        await eventually(lambda: consumer.health().ready, within=10, what="the consumer")
        assert await price("m9") == Price("m9", 1.0)
        version = 2
        assert await price("m9") == Price("m9", 1.0)  # cached
        (entry_id,) = await price.invalidate("m9")
        assert entry_id
        await eventually(
            lambda: consumer.stats.applied >= 1, within=10, what="the invalidation applied"
        )
        assert await price("m9") == Price("m9", 2.0)
    finally:
        await consumer.stop()
        await running
        await producer.aclose()
        await client.aclose()


async def test_invalidate_without_a_producer_says_how_to_give_one(cache: Cache) -> None:
    @cache.cached("prices")
    async def price(market_id: str) -> int:
        return 1

    with pytest.raises(ConfigError, match="producer="):
        await price.invalidate("m1")


def test_sync_functions_are_cached_and_invalidated_the_same_way(
    redis_url: str, sync_cache: SyncCache, stream_keys: StreamKeys
) -> None:
    producer = SyncProducer(
        RedisSettings.from_url(redis_url), producer_name="api", keys=stream_keys, registry=REGISTRY
    )
    loads: list[str] = []

    @sync_cache.cached("prices", producer=producer)
    def price(market_id: str) -> Price:
        loads.append(market_id)
        return Price(market_id, 3.0)

    try:
        assert price("s1") == price("s1") == Price("s1", 3.0)
        assert loads == ["s1"]
        (entry_id,) = price.invalidate("s1")
        stream = redis.Redis.from_url(redis_url)
        try:
            entries = stream.xrange(stream_keys.stream("inval"))
        finally:
            stream.close()
        assert [e[0].decode() for e in entries] == [entry_id]
        with pytest.raises(ConfigError, match="is async"):

            @sync_cache.cached("prices")
            async def wrong(market_id: str) -> int:
                return 1
    finally:
        producer.close()


def test_sync_reads_are_typed_like_async_ones(sync_cache: SyncCache) -> None:
    loads = 0

    def load() -> Price:
        nonlocal loads
        loads += 1
        return Price("t1", 4.0)

    assert sync_cache.get_or_set("prices", "t1", load, type=Price) == Price("t1", 4.0)
    assert sync_cache.get_or_set("prices", "t1", load, type=Price) == Price("t1", 4.0)
    assert loads == 1
    assert sync_cache.get("prices", "t1") == {"market_id": "t1", "bid": 4.0}
    assert sync_cache.get_many("prices", ["t1", "t2"], type=Price) == {"t1": Price("t1", 4.0)}
    assert sync_cache.get("prices", "t1", type=list[int]) is None
    assert sync_cache.stats.invalid == 1
