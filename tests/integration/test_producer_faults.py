"""A producer never drops silently: with Redis killed or hung, every call returns or raises in time.

Each test runs its own redis-server with ``appendfsync always``, so an XADD that returned an id
survives the kill, and counts ids returned against entries found once Redis is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from cachebus.contracts import EventFactory, KeysInvalidated, StreamKeys, decode_fields
from cachebus.contracts.errors import PublishError
from cachebus.core.connection import RedisSettings
from cachebus.producers import Producer, SyncProducer, publish_bound
from cachebus.testing import RedisServer, ServerOptions, eventually
from tests.harness.registry import REGISTRY

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

FAST = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "pool_timeout": 0.5, "retries": 1}
SLACK = 0.5  # scheduling on a busy 2-core machine, on top of the documented bound
FACTORY = EventFactory("api", registry=REGISTRY)


def event_ids_in(server: RedisServer, stream: str) -> list[str]:
    client = server.client()
    try:
        return [decode_fields(f).event.event_id for _, f in client.xrange(stream)]
    finally:
        client.close()


@pytest.fixture
def aof_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory(ServerOptions(persistence="aof-always"))


def test_the_documented_bound_follows_the_settings() -> None:
    settings = RedisSettings.from_url("redis://localhost", **FAST)
    # 2 attempts x (pool 0.5 + 2 connects x 0.5 + backoff 0.05 + reply 0.5) + backoff 0.05
    assert publish_bound(settings) == pytest.approx(4.15)
    assert publish_bound(RedisSettings.from_url("redis://localhost")) == pytest.approx(12.15)


async def test_with_redis_killed_and_restarted_no_returned_id_is_lost(
    aof_server: RedisServer,
) -> None:
    keys = StreamKeys("fault")
    producer = Producer(
        RedisSettings.from_url(aof_server.url, **FAST),
        producer_name="api",
        keys=keys,
        registry=REGISTRY,
    )
    bound = producer.publish_timeout
    accepted: dict[str, str] = {}
    failed: list[tuple[KeysInvalidated, PublishError]] = []
    slowest = 0.0
    stop = asyncio.Event()

    async def publisher(worker: int) -> None:
        nonlocal slowest
        n = 0
        while not stop.is_set():
            event = FACTORY.keys_event("positions", [f"{worker}:{n}"], reason="fault test")
            n += 1
            started = time.monotonic()
            try:
                accepted[event.event_id] = await producer.publish(event)
            except PublishError as exc:
                failed.append((event, exc))
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.005)

    workers = [asyncio.create_task(publisher(w)) for w in range(4)]
    await eventually(lambda: len(accepted) >= 20, within=10, what="publishes before the kill")
    before_kill = len(accepted)
    await asyncio.to_thread(aof_server.kill)
    await eventually(lambda: bool(failed), within=bound + SLACK, what="a publish failing")
    await asyncio.sleep(0.5)  # the outage goes on a while (publishes keep failing)
    await asyncio.to_thread(aof_server.start)
    restarted = len(accepted)
    await eventually(
        lambda: len(accepted) >= restarted + 20,
        within=2 * bound + SLACK,
        what="publishing resumed after the restart",
        diagnose=lambda: f"accepted {len(accepted)}, failed {len(failed)}",
    )
    stop.set()
    await asyncio.gather(*workers)

    assert before_kill > 0, "nothing was published before the kill"
    assert failed, "the kill did not affect any publish"
    assert len(accepted) > before_kill, "publishing did not resume after the restart"
    assert slowest <= bound + SLACK
    found = set(event_ids_in(aof_server, keys.stream("inval")))
    assert set(accepted) <= found, f"{len(set(accepted) - found)} returned ids are missing"

    # every failure names its event; publishing the same events again delivers them
    assert all(exc.event_ids == (event.event_id,) for event, exc in failed)
    for event, _ in failed:
        await producer.publish(event)
    await producer.aclose()
    found_after = event_ids_in(aof_server, keys.stream("inval"))
    assert {e.event_id for e, _ in failed} <= set(found_after)
    assert len(set(found_after)) == len(accepted) + len(failed)


async def test_with_redis_hung_publishes_raise_ambiguous_errors_within_the_bound(
    aof_server: RedisServer,
) -> None:
    keys = StreamKeys("hung")
    producer = Producer(
        RedisSettings.from_url(aof_server.url, **FAST),
        producer_name="api",
        keys=keys,
        registry=REGISTRY,
    )
    await producer.flush_namespace("prices")  # a pooled connection exists
    events = [FACTORY.keys_event("prices", [str(i)]) for i in range(3)]
    aof_server.pause()
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(producer.publish(e) for e in events), return_exceptions=True
        )
        elapsed = time.monotonic() - started
    finally:
        aof_server.resume()
    assert elapsed <= producer.publish_timeout + SLACK
    assert all(isinstance(r, PublishError) and r.ambiguous for r in results), results
    # the hung server may still apply what it had received: re-sending reuses the same ids
    for event in events:
        await producer.publish(event)
    await producer.aclose()
    found = event_ids_in(aof_server, keys.stream("inval"))
    assert {e.event_id for e in events} <= set(found)
    assert len(set(found)) == 1 + len(events)


def test_the_sync_facade_also_raises_within_the_bound_when_redis_is_hung(
    aof_server: RedisServer,
) -> None:
    keys = StreamKeys("hungsync")
    with SyncProducer.from_url(
        aof_server.url, producer_name="api", keys=keys, **FAST, registry=REGISTRY
    ) as producer:
        producer.flush_namespace("prices")
        aof_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(PublishError) as caught:
                producer.flush_namespace("market")
            elapsed = time.monotonic() - started
        finally:
            aof_server.resume()
        assert caught.value.ambiguous
        assert elapsed <= producer.publish_timeout + SLACK


def test_the_sync_facade_raises_quickly_when_redis_is_down(aof_server: RedisServer) -> None:
    keys = StreamKeys("down")
    with SyncProducer.from_url(
        aof_server.url, producer_name="api", keys=keys, **FAST, registry=REGISTRY
    ) as producer:
        producer.flush_namespace("prices")
        aof_server.kill()
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            producer.flush_namespace("market")
        assert time.monotonic() - started <= producer.publish_timeout + SLACK
        assert isinstance(caught.value.__cause__, Exception)
        assert not isinstance(caught.value.__cause__, redis.RedisError)
