"""Invalidation: exact keys with UNLINK, patterns with SCAN + UNLINK (never KEYS), escalation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeyRef, KeySpace
from cachebus.core import Cache, CacheConfig
from cachebus.testing import RedisServer
from tests.harness.registry import REGISTRY, Keys


@pytest.fixture
async def cache(redis_url: str, keyspace: KeySpace) -> AsyncIterator[Cache]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Cache(client, keyspace, CacheConfig(pattern_max_keys=5_000))
    await client.aclose()


def _fill(client: redis.Redis, ks: KeySpace, namespace: str, ids: list[str]) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ids), 1000):
        pipe.mset({ks.key(namespace, i): b"v" for i in ids[start : start + 1000]})
    pipe.execute()


async def test_exact_invalidation_removes_values_and_their_leases(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("positions", "4:all", [1])
    redis_client.set(keyspace.lease_key("positions", "4:all"), "someone-loading", px=5000)
    assert await cache.invalidate_keys("positions", ["4:all", "4:absent"]) == 1
    assert redis_client.exists(keyspace.key("positions", "4:all")) == 0
    assert redis_client.exists(keyspace.lease_key("positions", "4:all")) == 0
    assert cache.stats.invalidations == 1


async def test_a_consumer_batch_across_namespaces_is_one_round_trip(cache: Cache) -> None:
    refs = [KeyRef("prices", str(i)) for i in range(300)] + list(Keys.market_all("0xabc"))
    await cache.set_many("prices", {str(i): i for i in range(300)})
    await cache.set("market", "0xabc:detail", {"d": 1})
    before = len(cache.stats.latency)
    assert await cache.invalidate_refs(refs) == 301
    assert len(cache.stats.latency) - before == 1


async def test_large_batches_take_one_round_trip_per_thousand_ids(cache: Cache) -> None:
    before = len(cache.stats.latency)
    await cache.invalidate_keys("prices", (str(i) for i in range(2500)))
    assert len(cache.stats.latency) - before == 3


async def test_delete_is_an_invalidation(cache: Cache) -> None:
    await cache.set("user", "3:profile", "x")
    assert await cache.delete("user", "3:profile") is True
    assert await cache.delete("user", "3:profile") is False


async def test_a_pattern_removes_exactly_its_matches(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    _fill(
        redis_client,
        keyspace,
        "positions",
        [f"{u}:{p}" for u in ("4", "42", "5") for p in range(400)],
    )
    result = await cache.invalidate_pattern("positions", Keys.user_positions_all(4).pattern)
    assert (result.deleted, result.escalated) == (400, False)
    assert result.scanned_calls >= 1
    others = [keyspace.key("positions", "42:0"), keyspace.key("positions", "5:0")]
    assert redis_client.exists(*others) == 2
    # Those raw b"v" values were not written by a cache: reading them is a miss, never garbage.
    assert await cache.get_many("positions", ["42:0", "5:0"]) == {}


async def test_glob_characters_in_ids_never_widen_a_pattern(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    _fill(redis_client, keyspace, "positions", ["4*2:all", "402:all", "4x2:all"])
    result = await cache.invalidate_pattern("positions", Keys.user_positions_all("4*2").pattern)
    assert result.deleted == 1
    assert redis_client.exists(keyspace.key("positions", "402:all")) == 1


async def test_a_bare_star_is_refused_in_favour_of_a_flush(cache: Cache) -> None:
    with pytest.raises(ContractError, match="flush_namespace"):
        await cache.invalidate_pattern("positions", "*")
    with pytest.raises(ContractError, match="unclosed"):
        await cache.invalidate_pattern("positions", "a[b")


async def test_a_pattern_over_the_cap_escalates_to_a_namespace_flush(
    cache: Cache, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    await cache.set("positions", "9:all", "cached")
    _fill(redis_client, keyspace, "positions", [f"9:{i}" for i in range(300)])
    result = await cache.invalidate_pattern("positions", "9:*", max_keys=100)
    assert result.escalated and result.generation is not None
    assert await cache.get("positions", "9:all") is None
    assert cache.stats.escalations == 1


async def test_scan_and_keys_remove_the_same_ten_thousand_keys_but_we_never_send_keys(
    redis_server: RedisServer,
) -> None:
    # The audit's test 1, on 10,000 keys of 30,000: same result, and no KEYS on the wire.
    ks = KeySpace(prefix="audit", scope="bot", registry=REGISTRY)
    sync = redis_server.client()
    ids = [f"0x{i:06x}:all" for i in range(10_000)]
    _fill(sync, ks, "market", [f"{i}:summary" for i in range(20_000)])
    _fill(sync, ks, "positions", ids)
    pattern = ks.match("positions", "0x*")
    expected = set(sync.execute_command("KEYS", pattern))  # the baseline, once, for comparison
    sync.execute_command("CONFIG", "RESETSTAT")
    client = redis_server.async_client()
    result = await Cache(client, ks, CacheConfig(pattern_max_keys=20_000)).invalidate_pattern(
        "positions", "0x*"
    )
    await client.aclose()
    stats = sync.info("commandstats")
    assert result.deleted == len(expected) == 10_000
    assert sync.dbsize() == 20_000
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_scan"]["calls"] == result.scanned_calls >= 30
    assert stats["cmdstat_unlink"]["calls"] >= 10  # batches of at most 1000 keys
    sync.close()
