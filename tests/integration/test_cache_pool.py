"""The audit's test 2: 100 concurrent requests never hold more connections than the pool cap."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import redis

from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, SyncCache
from cachebus.testing import RedisServer

CAP = 10


def _connections_named(admin: redis.Redis, name: str) -> int:
    return sum(1 for client in admin.client_list() if client.get("name") == name)


async def test_a_hundred_concurrent_async_requests_stay_within_the_pool_cap(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    admin = redis_server.client()
    name = "pool-test-async"
    seen: list[int] = []
    async with Cache.from_url(
        redis_server.url, keyspace, max_connections=CAP, client_name=name
    ) as cache:
        await cache.set_many("prices", {str(i): i for i in range(100)})

        async def request(i: int) -> object:
            await cache.set("prices", f"w{i}", i)
            return await cache.get("prices", str(i))

        async def watch() -> None:
            while True:
                seen.append(await asyncio.to_thread(_connections_named, admin, name))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(request(i) for i in range(100)))
        watcher.cancel()
        seen.append(_connections_named(admin, name))
        assert results == list(range(100))
    assert 1 < seen[-1] <= CAP  # connections were reused, in parallel, and never over the cap
    assert max(seen) <= CAP
    admin.close()


def test_a_hundred_concurrent_threads_stay_within_the_pool_cap(
    redis_server: RedisServer, keyspace: KeySpace
) -> None:
    admin = redis_server.client()
    name = "pool-test-sync"
    with SyncCache.from_url(
        redis_server.url, keyspace, max_connections=CAP, client_name=name
    ) as cache:

        def request(i: int) -> object:
            cache.set("user", f"{i}:profile", {"i": i})
            return cache.get("user", f"{i}:profile")

        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(request, range(100)))
        assert results == [{"i": i} for i in range(100)]
        assert 1 < _connections_named(admin, name) <= CAP
    admin.close()
