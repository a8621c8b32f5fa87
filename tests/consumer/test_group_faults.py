"""Group mode under faults, against private redis-servers: every loss becomes one flush."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio

from cachebus.consumers.config import FlushReason
from cachebus.contracts.keys import StreamKeys
from cachebus.testing import FaultProxy, RedisServer, ServerOptions, eventually
from tests.consumer.helpers import Recorder, keys_event, make_consumer, publish

pytestmark = pytest.mark.fault
KEYS = StreamKeys("cb")
STREAM = KEYS.stream("inval")


def client_for(url: str, **kwargs: object) -> redis.asyncio.Redis:
    kwargs.setdefault("socket_timeout", 2)
    kwargs.setdefault("socket_connect_timeout", 1)
    kwargs.setdefault("retry", None)
    return redis.asyncio.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]


async def test_entries_of_a_member_that_never_returns_are_claimed_in_time(
    redis_server: RedisServer,
) -> None:
    client = client_for(redis_server.url)
    rec = Recorder()
    live = make_consumer(client, KEYS, rec, consumer="live", min_idle_ms=800, claim_interval_s=0.3)
    await live.run(until_idle=True)
    events = [keys_event("prices", str(i)) for i in range(30)]
    await publish(client, KEYS, events)
    await client.xreadgroup("svc", "dead", {STREAM: ">"}, count=30)  # then it dies
    started = time.monotonic()
    task = asyncio.ensure_future(live.run())
    while len(rec.applied) < 30 and time.monotonic() - started < 5:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await live.stop()
    await task
    assert sorted(rec.applied) == sorted(e.event_id for e in events)
    assert elapsed <= 0.8 + 0.3 + 0.5  # min_idle + one interval + slack
    assert live.stats.claimed == 30
    assert (await client.xpending(STREAM, "svc"))["pending"] == 0
    await client.aclose()


async def test_a_handler_slower_than_min_idle_keeps_its_entries(redis_server: RedisServer) -> None:
    client = client_for(redis_server.url)
    slow_rec, other_rec = Recorder(delay_s=0.3), Recorder()
    slow = make_consumer(client, KEYS, slow_rec, consumer="slow", min_idle_ms=300, read_count=5)
    other = make_consumer(
        client, KEYS, other_rec, consumer="other", min_idle_ms=300, claim_interval_s=0.05
    )
    await slow.run(until_idle=True)
    events = [keys_event("prices", str(i)) for i in range(5)]
    await publish(client, KEYS, events)
    # The slow member takes all 5 (1.5 s of work, 5x min_idle) while the other keeps claiming.
    t1 = asyncio.ensure_future(slow.run(until_idle=True))
    await asyncio.sleep(0.05)
    t2 = asyncio.ensure_future(other.run())
    await t1
    await other.stop()
    await t2
    assert sorted(slow_rec.applied) == sorted(e.event_id for e in events)
    assert other_rec.applied == []
    assert other.stats.claimed == 0
    await client.aclose()


async def test_a_deleted_stream_is_one_flush_then_the_group_is_recreated(
    redis_server: RedisServer,
) -> None:
    client = client_for(redis_server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec)
    await consumer.run(until_idle=True)
    await publish(client, KEYS, [keys_event("prices", "a")])
    await consumer.run(until_idle=True)
    await client.delete(STREAM)
    await publish(
        client, KEYS, [keys_event("prices", "lost")]
    )  # XADD recreates the stream, not the group
    await consumer.run(until_idle=True)
    after = [keys_event("prices", "b")]
    await publish(client, KEYS, after)
    await consumer.run(until_idle=True)
    await consumer.run(until_idle=True)
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1, FlushReason.GROUP_LOST: 1}
    assert rec.applied[-1] == after[0].event_id
    await client.aclose()


async def test_a_restart_without_persistence_is_one_flush(redis_server: RedisServer) -> None:
    client = client_for(redis_server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec)
    task = asyncio.ensure_future(consumer.run())
    diagnose = lambda: f"flushes {rec.flushes}, stats {consumer.stats.as_dict()}"  # noqa: E731
    # Given the group exists (the hazard: a restart without persistence loses it)
    await eventually(
        lambda: rec.reasons()[FlushReason.NEW_GROUP] == 1,
        within=10,
        what="the group created",
        diagnose=diagnose,
    )
    redis_server.restart()
    # When the consumer sees the loss and recreates the group (what is published before
    # that is covered by the flush, not delivered)
    await eventually(
        lambda: rec.reasons()[FlushReason.GROUP_LOST] == 1,
        within=10,
        what="the loss detected",
        diagnose=diagnose,
    )
    event = keys_event("prices", "after-restart")
    await publish(client, KEYS, [event])
    await eventually(
        lambda: event.event_id in rec.applied,
        within=10,
        what="the event after the restart applied",
        diagnose=diagnose,
    )
    await consumer.stop()
    await task
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1, FlushReason.GROUP_LOST: 1}
    await client.aclose()


async def test_an_evicted_stream_is_detected_and_flushed(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(ServerOptions(maxmemory="4mb", maxmemory_policy="allkeys-lru"))
    client = client_for(server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec)
    await consumer.run(until_idle=True)
    await publish(client, KEYS, [keys_event("prices", str(i)) for i in range(10)])
    await consumer.run(until_idle=True)
    # Cache writes push the stream out of memory.
    for batch in range(400):
        pipe = client.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"cache:{batch}:{i}", b"x" * 1000)
        await pipe.execute()
        if not await client.exists(STREAM):
            break
    assert not await client.exists(STREAM)
    await consumer.run(until_idle=True)
    assert rec.reasons()[FlushReason.GROUP_LOST] == 1
    await client.aclose()


async def test_a_stream_trimmed_past_a_paused_group_is_one_flush(redis_server: RedisServer) -> None:
    client = client_for(redis_server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec)
    await consumer.run(until_idle=True)
    await publish(client, KEYS, [keys_event("prices", str(i)) for i in range(10)])
    await client.xtrim(STREAM, maxlen=2, approximate=False)  # 8 unread entries gone
    await consumer.run(until_idle=True)
    assert rec.reasons()[FlushReason.TRIMMED] == 1
    assert len(rec.applied) == 2
    # Later traffic does not flush again for the same loss.
    await publish(client, KEYS, [keys_event("prices", "x")])
    await consumer.run(until_idle=True)
    assert rec.reasons()[FlushReason.TRIMMED] == 1
    # An XADD MAXLEN 0 (which the ACL cannot forbid a producer) is a new loss: one more flush.
    await client.xadd(STREAM, {"__data__": b"{}"}, maxlen=0, approximate=False)
    await consumer.run(until_idle=True)
    assert rec.reasons()[FlushReason.TRIMMED] == 2
    await client.aclose()


async def test_a_member_that_missed_the_loss_flushes_on_the_epoch(
    redis_server: RedisServer,
) -> None:
    client = client_for(redis_server.url)
    rec_a, rec_b = Recorder(), Recorder()
    a = make_consumer(client, KEYS, rec_a, consumer="a")
    b = make_consumer(client, KEYS, rec_b, consumer="b")
    await a.run(until_idle=True)
    await b.run(until_idle=True)
    assert rec_b.reasons() == {}  # b joined an existing, synced group
    # Given the stream is lost and member a recreated the group, then died before flushing
    await client.delete(STREAM)
    await a.group.create()
    # When b reads: it sees no NOGROUP, but the epoch its scope is synced to is gone
    await b.run(until_idle=True)
    assert rec_b.reasons() == {FlushReason.EPOCH_CHANGED: 1}
    await b.run(until_idle=True)
    assert rec_b.reasons() == {FlushReason.EPOCH_CHANGED: 1}
    await client.aclose()


async def test_redis_killed_and_restarted_with_aof_loses_nothing(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(ServerOptions(persistence="aof-always"))
    client = client_for(server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec)
    await consumer.run(until_idle=True)  # the group exists before anything is published
    task = asyncio.ensure_future(consumer.run())
    published: list[str] = []
    for round_ in range(3):
        events = [keys_event("prices", f"{round_}-{i}") for i in range(200)]
        producer = client_for(server.url)
        await publish(producer, KEYS, events)
        await producer.aclose()
        published += [e.event_id for e in events]
        await asyncio.sleep(0.05)
        server.kill()
        await asyncio.sleep(0.3)
        server.start()
    await eventually(
        lambda: set(published) <= set(rec.applied),
        within=20,
        what="every published event applied",
        diagnose=lambda: (
            f"missing {len(set(published) - set(rec.applied))}, stats {consumer.stats.as_dict()}"
        ),
    )
    await consumer.stop()
    await task
    assert (await client.xpending(STREAM, "svc"))["pending"] == 0
    assert FlushReason.GROUP_LOST not in rec.reasons()
    await client.aclose()


@pytest.mark.slow
async def test_a_cut_connection_and_a_paused_redis_lose_nothing_and_unready_meanwhile(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    producer = client_for(redis_server.url)
    through_proxy = client_for(proxy.url_for(redis_server.url), socket_timeout=1.5)
    rec = Recorder()
    consumer = make_consumer(through_proxy, KEYS, rec, max_staleness_s=1.0)
    task = asyncio.ensure_future(consumer.run())
    await eventually(lambda: consumer.health().ready, within=10, what="consumer ready")
    published: list[str] = []

    async def publish_some(tag: str) -> None:
        events = [keys_event("prices", f"{tag}-{i}") for i in range(100)]
        await publish(producer, KEYS, events)
        published.extend(e.event_id for e in events)

    await publish_some("before")
    # A cut of 10 s: producers go on, the consumer is unready.
    proxy.cut()
    unready_seen = False
    for second in range(10):
        await publish_some(f"cut{second}")
        await asyncio.sleep(1)
        unready_seen = unready_seen or not consumer.health().ready
    proxy.heal()
    assert unready_seen
    # A paused server for 10 s (the consumer times out, the producer waits it out).
    paused = time.monotonic()
    redis_server.pause()
    await eventually(
        lambda: not consumer.health().ready, within=9, what="unready while Redis is paused"
    )
    await asyncio.sleep(max(0.0, 10 - (time.monotonic() - paused)))
    redis_server.resume()
    await publish_some("after")
    await eventually(
        lambda: set(published) <= set(rec.applied) and consumer.health().ready,
        within=15,
        what="everything applied and ready again",
        diagnose=lambda: (
            f"lost {len(set(published) - set(rec.applied))}, "
            f"health {consumer.health()}, stats {consumer.stats.as_dict()}"
        ),
    )
    await consumer.stop()
    await task
    assert set(published) <= set(rec.applied), f"lost {len(set(published) - set(rec.applied))}"
    assert (await producer.xpending(STREAM, "svc"))["pending"] == 0
    assert consumer.health().live
    await producer.aclose()
    await through_proxy.aclose()


async def test_idle_members_are_removed_only_without_pending_entries(
    redis_server: RedisServer,
) -> None:
    client = client_for(redis_server.url)
    rec = Recorder()
    consumer = make_consumer(client, KEYS, rec, remove_idle_members_after_s=0.2)
    await consumer.run(until_idle=True)
    await publish(client, KEYS, [keys_event("prices", "1")])
    await client.xreadgroup("svc", "holder", {STREAM: ">"}, count=1)  # keeps a pending entry
    await client.xgroup_createconsumer(STREAM, "svc", "empty")
    await asyncio.sleep(0.3)
    await consumer.housekeeping.run()  # now, not at the next housekeeping interval
    names = {m["name"] for m in await consumer.group.members()}
    assert "empty" not in names and "holder" in names
    await client.aclose()


async def test_retention_trims_only_what_every_group_acked(redis_server: RedisServer) -> None:
    from cachebus.consumers.entries import stream_id
    from cachebus.consumers.retention import safe_min_id, trim_acknowledged

    client = client_for(redis_server.url)
    fast, slow = Recorder(), Recorder()
    f = make_consumer(client, KEYS, fast, group="fast", consumer="f")
    s = make_consumer(client, KEYS, slow, group="slow", consumer="s")
    await f.run(until_idle=True)
    await s.run(until_idle=True)
    ids = await publish(client, KEYS, [keys_event("prices", str(i)) for i in range(300)])
    await f.run(until_idle=True)
    await client.xreadgroup("slow", "s", {STREAM: ">"}, count=100)  # slow: 100 delivered, unacked
    assert await safe_min_id(client, STREAM) == ids[0]
    result = await trim_acknowledged(client, STREAM, max_length=10_000)
    assert result.removed == 0  # the slow group still needs everything
    await s.run(until_idle=True)  # acks its 100 and the 200 left
    result = await trim_acknowledged(client, STREAM, max_length=10_000)
    # Every group acked everything: the safe point is past the last entry, and what the
    # approximate trim removed (whole nodes) is exactly what the stream lost.
    assert result.min_id is not None and stream_id(result.min_id) > stream_id(ids[-1])
    assert 0 < result.removed == 300 - await client.xlen(STREAM)
    await client.aclose()
