"""The producer against real Redis: what lands in the stream, batches, errors, decorators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from cachebus.contracts import EventFactory, KeysInvalidated, StreamKeys, decode_fields
from cachebus.contracts.codec import DecodedEntry
from cachebus.contracts.errors import ConfigError, ContractError, PublishError
from cachebus.core.connection import RedisSettings
from cachebus.producers import Producer, SyncProducer
from cachebus.testing import eventually
from tests.harness.registry import REGISTRY, Keys


def entries(client: redis.Redis, stream: str) -> list[tuple[str, DecodedEntry]]:
    out = []
    for entry_id, fields in client.xrange(stream):
        eid = entry_id.decode()
        out.append((eid, decode_fields(fields, entry_id=eid)))
    return out


@pytest.fixture
async def producer(redis_url: str, stream_keys: StreamKeys) -> AsyncIterator[Producer]:
    async with Producer.from_url(
        redis_url, producer_name="api", keys=stream_keys, registry=REGISTRY
    ) as p:
        yield p


@pytest.fixture
def sync_producer(redis_url: str, stream_keys: StreamKeys) -> Iterator[SyncProducer]:
    with SyncProducer.from_url(
        redis_url, producer_name="worker", keys=stream_keys, registry=REGISTRY
    ) as p:
        yield p


async def test_each_call_returns_the_entry_id_of_a_decodable_event(
    producer: Producer, redis_client: redis.Redis
) -> None:
    ids = [
        await producer.invalidate_keys("positions", ["42:all", 7], reason="fill"),
        await producer.invalidate_pattern("positions", "42:*", reason="close"),
        await producer.flush_namespace("prices", reason="feed restart"),
    ]
    found = entries(redis_client, producer.stream_key)
    assert [eid for eid, _ in found] == ids
    kinds = [(d.event.kind, d.event.namespace, d.event.reason) for _, d in found]
    assert kinds == [
        ("keys", "positions", "fill"),
        ("pattern", "positions", "close"),
        ("flush", "prices", "feed restart"),
    ]
    first = found[0][1].event
    assert isinstance(first, KeysInvalidated) and first.keys == ("42:all", "7")
    assert first.producer == "api"
    assert found[0][1].headers["message_id"] == first.event_id


async def test_publishing_the_same_event_twice_resends_its_event_id(
    producer: Producer, redis_client: redis.Redis
) -> None:
    event = EventFactory("api", registry=REGISTRY).flush("market")
    await producer.publish(event)
    await producer.publish(event)
    found = entries(redis_client, producer.stream_key)
    assert [d.event.event_id for _, d in found] == [event.event_id, event.event_id]


async def test_a_batch_sends_everything_in_one_round_trip(
    producer: Producer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round trip is one write to the socket: count the writes that carry an XADD, whatever
    # layer (a pipeline, our own packed batch) made them.
    round_trips = 0
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal round_trips
        chunks = [command] if isinstance(command, (bytes, str)) else list(command)
        if any(b"XADD" in (c if isinstance(c, bytes) else c.encode()) for c in chunks):
            round_trips += 1
        return await original(self, chunks, *args, **kwargs)

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "send_packed_command", counting
    )
    async with producer.batch() as batch:
        for i in range(250):
            batch.invalidate_keys("positions", [f"{i}:all"], reason="bulk")
        batch.invalidate_pattern("market_lists", "top:*")
        batch.flush_namespace("prices")
    assert round_trips == 1
    assert len(batch.entry_ids) == 252
    found = entries(redis_client, producer.stream_key)
    assert [eid for eid, _ in found] == batch.entry_ids
    assert [d.event.event_id for _, d in found] == batch.event_ids


async def test_a_batch_whose_block_raises_sends_nothing(
    producer: Producer, redis_client: redis.Redis
) -> None:
    async def write_then_fail() -> None:
        async with producer.batch() as batch:
            batch.flush_namespace("prices")
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert redis_client.xlen(producer.stream_key) == 0


async def test_a_batch_splits_many_ids_into_events_that_fit(
    producer: Producer, redis_client: redis.Redis
) -> None:
    async with producer.batch() as batch:
        batch.invalidate_keys("positions", (f"{i}:all" for i in range(2500)))
    sizes = [len(d.event.keys) for _, d in entries(redis_client, producer.stream_key)]  # type: ignore[union-attr]
    assert sizes == [1000, 1000, 500]


async def test_the_stream_is_capped_approximately_as_a_safety_net(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    async with Producer.from_url(
        redis_url, producer_name="api", keys=stream_keys, maxlen=1000, registry=REGISTRY
    ) as p:
        async with p.batch() as batch:
            for i in range(3000):
                batch.invalidate_keys("prices", [str(i)])
        assert 1000 <= redis_client.xlen(p.stream_key) < 3000


def test_a_tiny_maxlen_is_refused(redis_url: str) -> None:
    with pytest.raises(ContractError) as caught:
        Producer(
            RedisSettings.from_url(redis_url), producer_name="api", maxlen=10, registry=REGISTRY
        )
    assert caught.value.rule == "producer.maxlen"


async def test_a_bad_event_is_refused_before_anything_is_sent(
    producer: Producer, redis_client: redis.Redis
) -> None:
    with pytest.raises(ContractError) as caught:
        await producer.invalidate_pattern("positions", "*")
    assert caught.value.rule == "pattern.bare_star"
    with pytest.raises(ContractError) as caught:
        await producer.invalidate_keys("api_positions", ["1"])
    assert caught.value.rule == "namespace.unknown"
    assert redis_client.xlen(producer.stream_key) == 0


async def test_a_refused_xadd_raises_a_publish_error_that_is_not_ambiguous(
    producer: Producer, redis_client: redis.Redis
) -> None:
    redis_client.set(producer.stream_key, "not a stream")
    event = EventFactory("api", registry=REGISTRY).flush("prices")
    with pytest.raises(PublishError) as caught:
        await producer.publish(event)
    assert caught.value.ambiguous is False
    assert caught.value.event_ids == (event.event_id,)
    assert "WRONGTYPE" in str(caught.value)


async def test_the_decorator_publishes_after_the_write_and_never_when_it_raises(
    producer: Producer, redis_client: redis.Redis
) -> None:
    @producer.invalidates(lambda user_id, **_: Keys.user_positions_all(user_id), reason="trade")
    async def record_trade(user_id: int, *, fail: bool = False) -> str:
        if fail:
            raise ValueError("database said no")
        return f"trade for {user_id}"

    assert await record_trade(42) == "trade for 42"
    with pytest.raises(ValueError, match="database said no"):
        await record_trade(43, fail=True)
    found = entries(redis_client, producer.stream_key)
    assert [(d.event.kind, d.event.pattern) for _, d in found] == [("pattern", "42:*")]  # type: ignore[union-attr]


async def test_the_context_manager_publishes_refs_added_inside_the_block(
    producer: Producer, redis_client: redis.Redis
) -> None:
    async with producer.invalidates(*Keys.market_all("m1"), reason="resolve") as scope:
        scope.add(Keys.market_by_condition("0xabc"))
    with pytest.raises(RuntimeError):
        async with producer.invalidates(Keys.price("m1")):
            raise RuntimeError("write failed")
    found = [d.event for _, d in entries(redis_client, producer.stream_key)]
    assert sorted((e.namespace, e.keys) for e in found) == [  # type: ignore[union-attr]
        ("market", ("m1:summary", "m1:detail")),
        ("market_by_condition", ("0xabc",)),
    ]


async def test_the_async_decorator_refuses_a_sync_function(producer: Producer) -> None:
    with pytest.raises(ConfigError, match="SyncProducer"):
        producer.invalidates(Keys.price("m1"))(lambda: None)


def test_the_sync_facade_publishes_the_same_entries(
    sync_producer: SyncProducer, redis_client: redis.Redis
) -> None:
    first = sync_producer.invalidate_keys("user", ["9:profile"], reason="edit")
    with sync_producer.batch() as batch:
        batch.invalidate_pattern("positions", "9:*")
        batch.flush_namespace("prices")

    @sync_producer.invalidates(lambda uid: Keys.user_profile(uid))
    def rename(uid: int) -> None:
        return None

    rename(9)
    found = entries(redis_client, sync_producer.stream_key)
    assert [eid for eid, _ in found][:3] == [first, *batch.entry_ids]
    assert [d.event.kind for _, d in found] == ["keys", "pattern", "flush", "keys"]
    assert {d.event.producer for _, d in found} == {"worker"}


def test_a_sync_publish_to_a_wrong_type_key_raises_publish_error(
    sync_producer: SyncProducer, redis_client: redis.Redis
) -> None:
    redis_client.set(sync_producer.stream_key, "x")
    batch = sync_producer.batch()
    batch.flush_namespace("prices")
    batch.flush_namespace("market")
    with pytest.raises(PublishError) as caught:
        batch.send()
    assert caught.value.ambiguous is False
    assert len(caught.value.event_ids) == 2


async def test_a_producer_dropped_without_closing_leaves_no_open_connection_warning(
    redis_url: str, stream_keys: StreamKeys, redis_client: redis.Redis
) -> None:
    import gc

    name = f"dropped-{stream_keys.prefix}"

    def held() -> int:
        return sum(client["name"] == name for client in redis_client.client_list())

    settings = RedisSettings.from_url(redis_url, client_name=name)
    producer = Producer(settings, producer_name="api", keys=stream_keys, registry=REGISTRY)
    # The first round trip also records the registry (a pipeline, through the pool); the
    # next takes that connection out of the pool and holds it for one-at-a-time publishes.
    await producer.flush_namespace("prices")
    await producer.flush_namespace("prices")
    assert held() == 1  # the hazard: an open connection, dropped with its producer
    del producer
    gc.collect()  # filterwarnings=error: a ResourceWarning here would fail the test
    # ...and the finalizer closed the connection instead of leaking it.
    await eventually(lambda: held() == 0, within=10, what="the dropped connection to close")


async def test_concurrent_single_publishes_all_land(
    producer: Producer, redis_client: redis.Redis
) -> None:
    import asyncio

    ids = await asyncio.gather(*(producer.invalidate_keys("prices", [str(i)]) for i in range(50)))
    assert len(set(ids)) == 50
    assert redis_client.xlen(producer.stream_key) == 50
