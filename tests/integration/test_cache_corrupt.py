"""Bad values in Redis: always a counted miss, deleted when unusable, never an exception."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from cachebus.bench._samples import sized_json
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig, ValueCodec
from cachebus.core.dictionary import Dictionary


@pytest.fixture
async def cache(redis_url: str, keyspace: KeySpace) -> AsyncIterator[Cache]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Cache(client, keyspace)
    await client.aclose()


@pytest.mark.parametrize(
    ("stored", "counter"),
    [
        (ValueCodec().encode({"ok": True}, 0)[:-3], "corrupt"),  # truncated
        (b'{"written": "by the old CacheManager"}', "unknown_codec"),
        (b"\xc6" + bytes(30), "unknown_codec"),  # a codec from the future
        (ValueCodec().encode(b"z" * 20_000, 0), "oversize"),  # over this reader's cap
    ],
)
async def test_an_unusable_value_is_a_counted_miss_and_is_deleted(
    redis_url: str, keyspace: KeySpace, redis_client: redis.Redis, stored: bytes, counter: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, keyspace, CacheConfig(max_value_bytes=10_000))
    key = keyspace.key("market", "1:summary")
    redis_client.set(key, stored)
    assert await cache.get("market", "1:summary", "miss") == "miss"
    assert getattr(cache.stats, counter) == 1 and cache.stats.misses == 1
    assert redis_client.exists(key) == 0
    await client.aclose()


async def test_a_key_of_another_type_is_a_miss_and_is_cleared(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    key = keyspace.key("market", "2:summary")
    redis_client.hset(key, "field", "value")  # GETEX answers WRONGTYPE
    assert await cache.get("market", "2:summary") is None
    assert cache.stats.corrupt == 1 and redis_client.exists(key) == 0


async def test_a_value_from_an_unknown_dictionary_is_a_miss_but_is_left_alone(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    import random

    samples = [sized_json("market", 1024, random.Random(i)) for i in range(200)]
    other_service = ValueCodec(dictionaries={None: Dictionary.train(samples, size=4096)})
    key = keyspace.key("market", "3:summary")
    redis_client.set(key, other_service.encode(samples[0], 0))
    assert await cache.get("market", "3:summary") is None
    assert cache.stats.unknown_dictionary == 1
    assert redis_client.exists(key) == 1  # readable by its writer; it will be overwritten


async def test_get_many_returns_the_good_values_among_bad_ones(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("prices", "good", 0.7)
    redis_client.set(keyspace.key("prices", "bad"), b"\xc0garbage")
    assert await cache.get_many("prices", ["good", "bad", "absent"]) == {"good": 0.7}
    assert cache.stats.corrupt == 1


async def test_get_or_set_reloads_over_a_corrupt_value(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    redis_client.set(keyspace.key("user", "1:profile"), b"\xc1\x00broken")

    async def loader() -> dict[str, str]:
        return {"name": "fresh"}

    assert await cache.get_or_set("user", "1:profile", loader) == {"name": "fresh"}
    assert await cache.get("user", "1:profile") == {"name": "fresh"}


async def test_an_oversize_loaded_value_is_returned_but_not_cached(
    redis_url: str, keyspace: KeySpace
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, keyspace, CacheConfig(max_value_bytes=100))

    async def loader() -> str:
        return "x" * 500

    assert await cache.get_or_set("market", "big:detail", loader) == "x" * 500
    assert cache.stats.unstorable == 1
    assert await cache.get("market", "big:detail") is None
    await client.aclose()
