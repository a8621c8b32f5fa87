"""The ack of a read of new entries is sent without waiting for its reply (ack_soon).

What must hold: the next read and apply go on while an ack is in flight; at most one ack is
in flight; a run ends only once its last ack landed; an ack that fails is handled at the next
batch (a replay of the entries it left pending), never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from cachebus.consumers import Consumer
from cachebus.contracts.errors import BackendError
from cachebus.contracts.keys import StreamKeys
from tests.consumer.helpers import Recorder, keys_event, make_consumer, publish


class _HeldAcks:
    """Wraps a member's ``group.ack``: each call waits until released, and is recorded."""

    def __init__(self, consumer: Consumer) -> None:
        self.original = consumer.group.ack
        self.release = asyncio.Event()
        self.calls: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        consumer.group.ack = self  # type: ignore[method-assign]

    async def __call__(self, ids: Sequence[str], counts: Any = ()) -> int:
        self.calls.append(list(ids))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            return await self.original(ids, counts)
        finally:
            self.in_flight -= 1


async def _member(client: redis.asyncio.Redis, keys: StreamKeys) -> tuple[Recorder, Consumer]:
    """A member whose group exists (its first run creates it), and what it applies."""
    rec = Recorder()
    consumer = make_consumer(client, keys, rec, block_ms=50)
    await consumer.run(until_idle=True)
    return rec, consumer


async def _until(condition: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_next_batch_is_read_and_applied_while_the_last_ack_is_in_flight(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        rec, consumer = await _member(client, stream_keys)
        held = _HeldAcks(consumer)
        task = asyncio.create_task(consumer.run())
        try:
            first = keys_event("prices", "1")
            await publish(client, stream_keys, [first])
            await _until(lambda: len(held.calls) == 1)
            # Given the first batch's XACK has not been answered
            second = keys_event("prices", "2")
            await publish(client, stream_keys, [second])
            # Then the second event is read and applied all the same
            await _until(lambda: second.event_id in rec.applied)
            # And its ack waits for the first one: one ack in flight at a time
            await asyncio.sleep(0.1)
            assert len(held.calls) == 1 and held.in_flight == 1
            stream = stream_keys.stream("inval")
            assert (await client.xpending(stream, "svc"))["pending"] == 2
            held.release.set()
            await _until(lambda: len(held.calls) == 2 and held.in_flight == 0)
            assert held.most_in_flight == 1
            assert (await client.xpending(stream, "svc"))["pending"] == 0
        finally:
            held.release.set()
            await consumer.stop()
            await task
        assert rec.applied == [first.event_id, second.event_id]
        assert consumer.stats.acked == 2


async def test_a_run_ends_only_once_its_last_ack_landed(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        rec, consumer = await _member(client, stream_keys)
        held = _HeldAcks(consumer)
        await publish(client, stream_keys, [keys_event("prices", str(i)) for i in range(5)])
        run = asyncio.create_task(consumer.run(until_idle=True))
        await _until(lambda: len(held.calls) == 1)
        await asyncio.sleep(0.3)  # the member is idle by now: only the ack holds the run
        assert not run.done()
        held.release.set()
        await asyncio.wait_for(run, 10.0)
        stream = stream_keys.stream("inval")
        assert (await client.xpending(stream, "svc"))["pending"] == 0
        assert consumer.stats.acked == 5
        assert len(rec.applied) == 5


async def test_an_ack_that_fails_in_flight_is_replayed_not_lost(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        rec, consumer = await _member(client, stream_keys)
        original = consumer.group.ack
        failures = 0

        async def fail_once(ids: Sequence[str], counts: Any = ()) -> int:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise BackendError("XACK refused (injected)")
            return await original(ids, counts)

        consumer.group.ack = fail_once  # type: ignore[method-assign]
        events = [keys_event("prices", str(i)) for i in range(3)]
        await publish(client, stream_keys, events)
        await consumer.run(until_idle=True)
        # The failed ack left the entries pending; the replay applied and acked them again.
        stream = stream_keys.stream("inval")
        assert (await client.xpending(stream, "svc"))["pending"] == 0
        assert failures == 1
        assert set(rec.applied) == {e.event_id for e in events}
        assert consumer.stats.backend_errors >= 1
        assert consumer.health().ready
