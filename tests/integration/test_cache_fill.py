"""get_or_set: one loader per key, per process and across processes; late fills never win."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio

from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig, SyncCache, ValueCodec


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[redis.asyncio.Redis]]:
    made: list[redis.asyncio.Redis] = []
    yield made
    for client in made:
        await client.aclose()


@pytest.fixture
def make_cache(redis_url: str, keyspace: KeySpace, clients: list[redis.asyncio.Redis]) -> Any:
    def make(**config: Any) -> Cache:
        client = redis.asyncio.Redis.from_url(redis_url)
        clients.append(client)
        return Cache(client, keyspace, CacheConfig(**config))

    return make


class Loader:
    def __init__(self, value: Any = "loaded", delay: float = 0.05) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay
        self.started = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(self.delay)
        return self.value


async def test_concurrent_callers_in_one_process_load_once(make_cache: Any) -> None:
    cache, loader = make_cache(), Loader({"price": 0.5})
    results = await asyncio.gather(*(cache.get_or_set("prices", "m1", loader) for _ in range(25)))
    assert results == [{"price": 0.5}] * 25 and loader.calls == 1
    assert await cache.get("prices", "m1") == {"price": 0.5}


async def test_two_processes_share_one_load_through_the_lease(make_cache: Any) -> None:
    # What is judged is the sharing, not the wait's bound: a loaded machine once kept the 0.2 s
    # load past the default 2 s wait, and the second caller rightly loaded for itself.
    first, second = (make_cache(lease_ttl=60.0, lease_wait=30.0) for _ in range(2))
    loader = Loader("from the database", delay=0.2)
    results = await asyncio.gather(
        first.get_or_set("market", "1:summary", loader),
        second.get_or_set("market", "1:summary", loader),
    )
    assert results == ["from the database"] * 2 and loader.calls == 1
    assert first.stats.lease_waits + second.stats.lease_waits == 1


async def test_a_flush_during_the_load_makes_the_late_value_invisible(make_cache: Any) -> None:
    cache, flusher = make_cache(), make_cache()
    loader = Loader("computed from old data", delay=0.2)
    task = asyncio.create_task(cache.get_or_set("positions", "7:all", loader))
    await loader.started.wait()
    await flusher.flush_namespace("positions")
    assert await task == "computed from old data"  # the caller still gets its answer
    assert await cache.get("positions", "7:all") is None


async def test_an_invalidation_during_the_load_refuses_the_fill(make_cache: Any) -> None:
    cache, consumer = make_cache(), make_cache()
    loader = Loader("stale by the time it lands", delay=0.2)
    task = asyncio.create_task(cache.get_or_set("user", "3:profile", loader))
    await loader.started.wait()
    await consumer.invalidate_keys("user", ["3:profile"])
    assert await task == "stale by the time it lands"
    assert cache.stats.refused_fills == 1
    assert await cache.get("user", "3:profile") is None


async def test_a_lease_that_expires_mid_load_refuses_the_fill(make_cache: Any) -> None:
    cache = make_cache(lease_ttl=0.05)
    assert await cache.get_or_set("prices", "slow", Loader(1, delay=0.2)) == 1
    assert cache.stats.refused_fills == 1 and await cache.get("prices", "slow") is None


async def test_a_loader_error_reaches_every_caller_and_frees_the_lease(
    make_cache: Any, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    cache = make_cache()

    async def failing() -> Any:
        await asyncio.sleep(0.05)
        raise LookupError("database down")

    results = await asyncio.gather(
        *(cache.get_or_set("prices", "x", failing) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert redis_client.exists(keyspace.lease_key("prices", "x")) == 0


async def test_waiters_give_up_after_the_bound_and_load_without_caching(
    make_cache: Any, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    redis_client.set(keyspace.lease_key("prices", "held"), "a stuck process", px=10_000)
    cache = make_cache(lease_wait=0.1)
    started = time.monotonic()
    assert await cache.get_or_set("prices", "held", Loader("mine", delay=0)) == "mine"
    assert time.monotonic() - started < 2.0
    assert cache.stats.lease_timeouts == 1
    assert await cache.get("prices", "held") is None  # the lease holder fills it, not us


async def test_an_aging_hit_is_refreshed_by_one_caller_while_others_get_it(
    make_cache: Any, redis_client: redis.Redis, keyspace: KeySpace
) -> None:
    # market TTL 300 s, refresh_ahead 0.8: a value written 250 s ago is due for refresh.
    key = keyspace.key("market", "5:summary")
    # As the cache writes it: under the namespace generation, which exists once anything is.
    redis_client.set(keyspace.generation_key("market"), 7)
    redis_client.set(key, ValueCodec().encode("old", 7, now=time.time() - 250), px=60_000)
    refresher, reader = make_cache(), make_cache()
    loader = Loader("new", delay=0.2)
    refresh = asyncio.create_task(refresher.get_or_set("market", "5:summary", loader))
    await loader.started.wait()
    assert await reader.get_or_set("market", "5:summary", Loader("never")) == "old"
    assert reader.stats.served_while_refreshing == 1 and reader.stats.loads == 0
    assert await refresh == "new"
    assert refresher.stats.refreshes == 1
    assert await reader.get("market", "5:summary") == "new"


def test_threads_of_a_sync_cache_load_once(redis_url: str, keyspace: KeySpace) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = SyncCache(client, keyspace)
    calls = 0
    barrier = threading.Barrier(6)

    def loader() -> list[int]:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        return [1, 2]

    results: list[Any] = []

    def call() -> None:
        barrier.wait()
        results.append(cache.get_or_set("positions", "2:all", loader))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[1, 2]] * 6 and calls == 1
    assert cache.get("positions", "2:all") == [1, 2]
    client.close()


async def test_a_waiter_that_takes_the_lease_just_after_the_holder_filled_loads_nothing(
    make_cache: Any,
) -> None:
    """The holder stores its value and releases the lease between the waiter's last poll and
    its next acquire (a CPU hog once stretched that window until it happened): the waiter,
    now holding the lease, finds the value and does not load a second time."""
    from cachebus.core._io import Batch, Pause, execute_async
    from cachebus.core.fill import LOAD, fill_flow

    holder, waiter = (make_cache(lease_ttl=60.0, lease_wait=30.0) for _ in range(2))
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "from the database"

    holding = asyncio.ensure_future(holder.get_or_set("market", "1:summary", slow))
    flow = fill_flow(waiter._core, "market", "1:summary")
    acquires = 0
    reply: Any = None
    result: Any = None
    try:
        step = next(flow)
        while True:
            assert step is not LOAD, "the waiter loaded although the holder had filled"
            if isinstance(step, Pause):
                reply = []
            else:
                assert isinstance(step, Batch)
                if step.operation.startswith("lease"):
                    acquires += 1
                    if acquires == 1:  # the first attempt must meet the holder's lease
                        await asyncio.wait_for(_holder_leased(waiter), 5)
                    if acquires == 2:  # after one poll: the holder fills and releases now
                        release.set()
                        assert await asyncio.wait_for(holding, 5) == "from the database"
                reply = await execute_async(waiter._client, step)
            step = flow.send(reply)
    except StopIteration as done:
        result = done.value
    finally:
        release.set()
        await asyncio.gather(holding, return_exceptions=True)
    assert result == "from the database"
    assert acquires == 2 and waiter.stats.lease_waits == 1 and waiter.stats.loads == 0


async def _holder_leased(cache: Cache) -> None:
    client = cache._client
    assert isinstance(client, redis.asyncio.Redis)
    lease = cache._core.keyspace.lease_key("market", "1:summary")
    while not await client.exists(lease):
        await asyncio.sleep(0.005)
