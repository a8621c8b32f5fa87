"""Group mode on a shared Redis: creation, replay of own pending entries, acks, poison."""

from __future__ import annotations

import asyncio

import redis.asyncio

from cachebus.consumers.config import FlushReason
from cachebus.contracts.keys import StreamKeys
from tests.consumer.helpers import Recorder, keys_event, make_consumer, publish


async def test_a_new_group_flushes_its_scope_once_then_applies_what_follows(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec)
    await consumer.run(until_idle=True)
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1}
    events = [keys_event("prices", str(i)) for i in range(50)]
    await publish(client, stream_keys, events)
    await consumer.run(until_idle=True)
    assert rec.applied == [e.event_id for e in events]
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1}
    pending = await client.xpending(stream_keys.stream("inval"), "svc")
    assert pending["pending"] == 0
    assert consumer.health().ready
    await client.aclose()


async def test_a_restarted_member_replays_its_own_pending_entries_first(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    await make_consumer(client, stream_keys, rec).run(until_idle=True)  # creates the group
    events = [keys_event("prices", str(i)) for i in range(20)]
    await publish(client, stream_keys, events)
    # Given member c1 took 20 entries and died before acking them
    stream = stream_keys.stream("inval")
    taken = await client.xreadgroup("svc", "c1", {stream: ">"}, count=20)
    assert len(taken[0][1]) == 20
    # When c1 starts again
    rec2 = Recorder()
    await make_consumer(client, stream_keys, rec2).run(until_idle=True)
    # Then it applied all of them, and nothing is pending
    assert sorted(rec2.applied) == sorted(e.event_id for e in events)
    assert (await client.xpending(stream, "svc"))["pending"] == 0
    assert rec2.reasons() == {}
    await client.aclose()


async def test_events_for_other_namespaces_are_acked_and_ignored(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec)
    await consumer.run(until_idle=True)
    await publish(client, stream_keys, [keys_event("user", "1:profile"), keys_event("prices", "x")])
    await consumer.run(until_idle=True)
    assert len(rec.applied) == 1
    assert consumer.stats.foreign_skipped == 1
    assert (await client.xpending(stream_keys.stream("inval"), "svc"))["pending"] == 0
    await client.aclose()


async def test_an_undecodable_entry_is_dead_lettered_flushed_and_the_flow_goes_on(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec)
    await consumer.run(until_idle=True)
    stream = stream_keys.stream("inval")
    await publish(client, stream_keys, [keys_event("prices", "a")])
    bad = await client.xadd(stream, {"__data__": b"{not json"})
    await publish(client, stream_keys, [keys_event("prices", "b")])
    await consumer.run(until_idle=True)
    assert len(rec.applied) == 2
    assert rec.reasons()[FlushReason.POISON] == 1
    dead = await client.xrange(stream_keys.dead_letter("inval", "svc"))
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"dlq_entry_id"] == bad
    assert fields[b"dlq_reason"].startswith(b"decode:")
    assert fields[b"__data__"] == b"{not json"
    assert (await client.xpending(stream, "svc"))["pending"] == 0
    await client.aclose()


async def test_an_event_a_sink_keeps_refusing_is_dead_lettered_after_max_deliveries(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec, max_deliveries=3)
    await consumer.run(until_idle=True)
    good, poison, after = (
        keys_event("prices", "1"),
        keys_event("market", "m:summary"),
        keys_event("prices", "2"),
    )
    rec.fail_on.add(poison.event_id)
    await publish(client, stream_keys, [good, poison, after])
    await consumer.run(until_idle=True)
    assert rec.applied == [good.event_id, after.event_id]
    flushes = [(ns, r) for ns, r in rec.flushes if r == FlushReason.POISON]
    assert flushes == [(frozenset({"market"}), FlushReason.POISON)]
    dead = await client.xrange(stream_keys.dead_letter("inval", "svc"))
    assert dead[0][1][b"dlq_reason"] == b"apply"
    assert dead[0][1][b"dlq_deliveries"] == b"3"
    assert consumer.stats.dead_lettered == 1
    await client.aclose()


async def test_a_duplicate_in_a_row_reaches_the_callback_once(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec)
    await consumer.run(until_idle=True)
    event = keys_event("prices", "1")
    await publish(client, stream_keys, [event, event])  # a producer retry that appended twice
    await consumer.run(until_idle=True)
    assert rec.applied == [event.event_id]
    await client.aclose()


async def test_a_stop_before_the_first_run_is_kept_and_a_later_run_runs_again(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    consumer = make_consumer(client, stream_keys, Recorder())
    running = asyncio.ensure_future(consumer.run())  # not started yet when stop() is called
    await consumer.stop()
    await asyncio.wait_for(running, timeout=5)  # it saw the stop: it never read
    assert await client.exists(stream_keys.stream("inval")) == 0
    rec = Recorder()
    restarted = make_consumer(client, stream_keys, rec)
    await restarted.run(until_idle=True)  # a stopped consumer's successor runs
    again = asyncio.ensure_future(restarted.run())  # and the same one restarts after a stop
    await asyncio.sleep(0)
    await restarted.stop()
    await asyncio.wait_for(again, timeout=5)
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1}
    await client.aclose()


async def test_a_stop_right_after_a_restart_is_requested_is_kept(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    rec = Recorder()
    consumer = make_consumer(client, stream_keys, rec)
    await consumer.run(until_idle=True)
    first = asyncio.ensure_future(consumer.run())
    await asyncio.sleep(0)
    await consumer.stop()
    await asyncio.wait_for(first, timeout=5)
    # The restart's task has not started when stop() is called: the stop is for it.
    again = asyncio.ensure_future(consumer.run())
    await consumer.stop()
    await asyncio.wait_for(again, timeout=5)
    # Stops that came before a run was requested (twice, as __aexit__ after stop() does) are
    # not: the next run reads.
    await consumer.stop()
    event = keys_event("prices", "7")
    await publish(client, stream_keys, [event])
    await asyncio.wait_for(consumer.run(until_idle=True), timeout=10)
    assert rec.applied == [event.event_id]
    await client.aclose()
