"""Late fills never win: deterministic races between load, invalidate and fill.

Each race holds the loader at a barrier after it read the *old* data, runs an invalidation
(exact, pattern or flush; by this process, another one, or a consumer applying the stream),
then lets the fill land. The fill must be refused, whatever else was lost meanwhile: the
value (evicted), the lease, the lease index or the generation key.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, SyncCache

Invalidate = Callable[[Cache], Awaitable[object]]


class GatedLoader:
    """Reads the source, then waits at a barrier before returning what it read."""

    def __init__(self, source: dict[str, str], ident: str) -> None:
        self.source, self.ident = source, ident
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        value = self.source[self.ident]
        self.loaded.set()
        await self.release.wait()
        return value


@pytest.fixture
async def two_caches(redis_url: str, keyspace: KeySpace) -> AsyncIterator[tuple[Cache, Cache]]:
    """The reader's cache and, on its own connection, the invalidating process's cache."""
    async with (
        Cache.from_url(redis_url, keyspace) as reader,
        Cache.from_url(redis_url, keyspace) as writer,
    ):
        yield reader, writer


async def race(reader: Cache, ident: str, between: Callable[[], Awaitable[object]]) -> str:
    """get_or_set of positions/ident loads 'old'; ``between`` runs before the fill lands."""
    source = {ident: "old"}
    loader = GatedLoader(source, ident)
    fill = asyncio.create_task(reader.get_or_set("positions", ident, loader))
    await asyncio.wait_for(loader.loaded.wait(), 5)
    source[ident] = "new"  # the writer's commit...
    await between()  # ...and its invalidation
    loader.release.set()
    result = await asyncio.wait_for(fill, 5)
    assert result == "old"  # the caller still gets what it loaded
    return result


INVALIDATIONS: dict[str, Invalidate] = {
    "exact key": lambda c: c.invalidate_keys("positions", ["42:all"]),
    "pattern": lambda c: c.invalidate_pattern("positions", "42:*"),
    "pattern escalated to a flush": lambda c: c.invalidate_pattern("positions", "4*", max_keys=1),
    "namespace flush": lambda c: c.flush_namespace("positions"),
    "scope flush": lambda c: c.flush_scope(),
}


@pytest.mark.parametrize("evicted", [False, True], ids=["value cached", "value evicted"])
@pytest.mark.parametrize("kind", list(INVALIDATIONS))
async def test_a_fill_that_loaded_before_an_invalidation_is_refused(
    two_caches: tuple[Cache, Cache],
    redis_client: redis.Redis,
    keyspace: KeySpace,
    kind: str,
    evicted: bool,
) -> None:
    reader, writer = two_caches
    await writer.set_many("positions", {"42:other": 1, "43:all": 2})  # pattern escalation fodder
    if not evicted:
        # An aging value is refreshed under the lease: same race, value present throughout.
        await writer.set("positions", "42:all", "older", ttl=0.2)
        await asyncio.sleep(0.25)
    await race(reader, "42:all", lambda: INVALIDATIONS[kind](writer))
    assert reader.stats.refused_fills == 1 and reader.stats.sets == 0
    assert await reader.get("positions", "42:all") is None
    assert redis_client.exists(keyspace.lease_key("positions", "42:all")) == 0
    assert await reader.get_or_set("positions", "42:all", _const("new")) == "new"
    assert await reader.get("positions", "42:all") == "new"


@pytest.mark.parametrize(
    "kind",
    [
        "exact key of another id",
        "pattern of other ids",
        "flush of another namespace",
    ],
)
async def test_an_invalidation_of_something_else_lets_the_fill_land(
    two_caches: tuple[Cache, Cache], kind: str
) -> None:
    reader, writer = two_caches
    other: dict[str, Invalidate] = {
        "exact key of another id": lambda c: c.invalidate_keys("positions", ["42:other"]),
        "pattern of other ids": lambda c: c.invalidate_pattern("positions", "43:*"),
        "flush of another namespace": lambda c: c.flush_namespace("prices"),
    }
    await race(reader, "42:all", lambda: other[kind](writer))
    assert reader.stats.refused_fills == 0 and reader.stats.sets == 1
    assert await reader.get("positions", "42:all") == "old"  # nothing said it changed


@pytest.mark.parametrize("lost", ["lease", "lease index", "generation"])
async def test_a_fill_whose_guard_was_evicted_is_refused(
    two_caches: tuple[Cache, Cache], redis_client: redis.Redis, keyspace: KeySpace, lost: str
) -> None:
    reader, _ = two_caches
    key = {
        "lease": keyspace.lease_key("positions", "42:all"),
        "lease index": keyspace.lease_index_key("positions"),
        "generation": keyspace.generation_key("positions"),
    }[lost]

    async def evict() -> None:
        assert redis_client.delete(key) == 1  # what allkeys-* eviction does to it

    await race(reader, "42:all", evict)
    assert reader.stats.refused_fills == 1
    assert await reader.get("positions", "42:all") is None


async def test_a_pattern_voids_only_the_leases_it_matches(
    two_caches: tuple[Cache, Cache], redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    reader, writer = two_caches
    source = {"7:a": "old", "7:b": "old", "8:a": "old", "7[x]": "old"}
    loaders = {ident: GatedLoader(source, ident) for ident in source}
    fills = [
        asyncio.create_task(reader.get_or_set("positions", ident, loader))
        for ident, loader in loaders.items()
    ]
    for loader in loaders.values():
        await asyncio.wait_for(loader.loaded.wait(), 5)
    index = keyspace.lease_index_key("positions")
    assert redis_client.zcard(index) == 4
    await writer.invalidate_pattern("positions", "7:*")
    assert sorted(m.decode() for m in redis_client.zrange(index, 0, -1)) == ["7[x]", "8:a"]
    for loader in loaders.values():
        loader.release.set()
    await asyncio.gather(*fills)
    assert await reader.get_many("positions", list(source)) == {"8:a": "old", "7[x]": "old"}
    assert reader.stats.refused_fills == 2
    assert redis_client.exists(index) == 0  # every lease left the index with its fill


async def test_a_failed_load_leaves_no_lease_behind(
    two_caches: tuple[Cache, Cache], redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    reader, _ = two_caches

    async def failing() -> str:
        raise LookupError("database down")

    with pytest.raises(LookupError):
        await reader.get_or_set("positions", "1:all", failing)
    assert redis_client.exists(keyspace.lease_key("positions", "1:all")) == 0
    assert redis_client.zcard(keyspace.lease_index_key("positions")) == 0


async def test_expired_leases_leave_the_index_at_the_next_lease(
    two_caches: tuple[Cache, Cache], redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    reader, _ = two_caches
    index = keyspace.lease_index_key("positions")
    # A process that died holding a lease: listed, its lease key expired.
    redis_client.zadd(index, {"dead:all": 1})
    await reader.get_or_set("positions", "1:all", _const(1))
    assert redis_client.zscore(index, "dead:all") is None


async def test_random_interleavings_of_many_races_store_nothing_stale(
    two_caches: tuple[Cache, Cache],
) -> None:
    """200 keys loading old data; invalidations of every kind land at random points."""
    reader, writer = two_caches
    rng = random.Random(9)
    source = {f"{i % 20}:{i}": "old" for i in range(200)}
    loaders = {ident: GatedLoader(source, ident) for ident in source}
    fills = {
        ident: asyncio.create_task(reader.get_or_set("positions", ident, loader))
        for ident, loader in loaders.items()
    }
    for loader in loaders.values():
        await asyncio.wait_for(loader.loaded.wait(), 10)
    changed: set[str] = set()
    pending = list(source)
    rng.shuffle(pending)
    for ident in pending:
        roll = rng.random()
        if roll < 0.3:  # this key changes: exact invalidation
            source[ident] = "new"
            changed.add(ident)
            await writer.invalidate_keys("positions", [ident])
        elif roll < 0.4:  # its whole group changes: pattern
            group = ident.split(":")[0]
            for other in source:
                if other.split(":")[0] == group:
                    source[other] = "new"
                    changed.add(other)
            await writer.invalidate_pattern("positions", f"{group}:*")
        loaders[ident].release.set()  # this fill lands now, before or after its invalidation
        await asyncio.sleep(0)
    await asyncio.gather(*fills.values())
    cached = await reader.get_many("positions", list(source))
    stale = {ident for ident, value in cached.items() if value != source[ident]}
    assert stale == set()
    assert changed and reader.stats.refused_fills > 0
    # Nothing touched the unchanged keys, so every one of their fills landed.
    assert set(cached) == set(source) - changed


def test_the_sync_cache_refuses_a_late_fill_the_same_way(
    redis_url: str, keyspace: KeySpace
) -> None:
    client = redis.Redis.from_url(redis_url)
    reader, writer = SyncCache(client, keyspace), SyncCache(client, keyspace)
    loaded, release = threading.Event(), threading.Event()

    def loader() -> str:
        loaded.set()
        assert release.wait(5)
        return "old"

    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(reader.get_or_set("market", "3:detail", loader))
    )
    thread.start()
    assert loaded.wait(5)
    writer.invalidate_pattern("market", "3:*")
    release.set()
    thread.join(5)
    assert results == ["old"] and reader.stats.refused_fills == 1
    assert reader.get("market", "3:detail") is None
    client.close()


def _const(value: Any) -> Callable[[], Awaitable[Any]]:
    async def load() -> Any:
        return value

    return load
