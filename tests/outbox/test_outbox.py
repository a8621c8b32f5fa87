"""The transactional outbox on SQLite and PostgreSQL: commit together, relay with the same ids."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable

import pytest
import redis
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.contracts.codec import decode_fields
from cachebus.contracts.errors import ConfigError, PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.keys import KeyRef, PatternRef, StreamKeys
from cachebus.producers import Producer
from cachebus.producers.outbox import OutboxRelay, RelayConfig, open_store
from cachebus.producers.outbox.base import table_name
from tests.harness.registry import REGISTRY, REGISTRY_FILE, Keys
from tests.outbox.backends import Backend, write_change


@pytest.fixture
async def producer(redis_url: str, stream_keys: StreamKeys) -> AsyncIterator[Producer]:
    async with Producer.from_url(
        redis_url, producer_name="relay", keys=stream_keys, registry=REGISTRY
    ) as made:
        yield made


def stream_event_ids(client: redis.Redis, keys: StreamKeys) -> list[str]:
    entries = client.xrange(keys.stream("inval"))
    return [decode_fields(fields).event.event_id for _, fields in entries]


async def add_changes(backend: Backend, count: int, per_tx: int = 10) -> list[str]:
    """``count`` data changes, each with its invalidation, ``per_tx`` per transaction."""
    store = backend.store(producer_name="api")
    ids: list[str] = []
    for start in range(0, count, per_tx):
        async with backend.service() as conn:
            for n in range(start, min(start + per_tx, count)):
                await write_change(backend, conn, f"acct{n}", n)
                ids += await store.add(conn, Keys.user_positions(n), reason="trade")
    return ids


async def test_the_invalidation_commits_with_the_data_change_or_not_at_all(
    backend: Backend,
) -> None:
    store = backend.store(producer_name="api")

    async def fail_after_writing() -> None:
        async with backend.service() as conn:
            await write_change(backend, conn, "a1", 100)
            await store.add(conn, KeyRef("positions", "a1:all"), reason="trade")
            raise RuntimeError("the service failed after writing")  # rolls both back

    with pytest.raises(RuntimeError, match="the service failed"):
        await fail_after_writing()
    assert await backend.rows() == []
    async with backend.service() as conn:
        await write_change(backend, conn, "a1", 100)
        ids = await store.add(
            conn, KeyRef("positions", "a1:all"), PatternRef("market_lists", "top:*")
        )
    assert [row[0] for row in await backend.rows()] == ids and len(ids) == 2
    async with backend.store() as relay_side:
        assert await relay_side.backlog() == 2


async def test_a_write_outside_a_transaction_is_refused_and_writes_nothing(
    backend: Backend,
) -> None:
    store = backend.store()
    async with backend.service() as conn:
        await (conn.commit() if backend.name == "sqlite" else conn.execute("COMMIT"))
        with pytest.raises(ConfigError, match="transaction"):
            await store.add(conn, KeyRef("positions", "1:all"))
        if backend.name == "postgres":
            await conn.execute("BEGIN")  # for the fixture's own commit
    assert await backend.rows() == []


async def test_the_relay_publishes_every_row_with_its_event_id_and_marks_it_sent(
    backend: Backend, producer: Producer, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    ids = await add_changes(backend, 250)
    async with backend.store() as store:
        relay = OutboxRelay(store, producer, RelayConfig(batch_size=100))
        await relay.run(until_empty=True)
        assert await store.backlog() == 0
    assert stream_event_ids(redis_client, stream_keys) == ids  # one round trip per batch, in order
    assert relay.stats.batches == 3 and relay.stats.published == 250
    rows = await backend.rows()
    assert all(entry_id for _, entry_id, _ in rows) and {a for _, _, a in rows} == {1}


class FlakyPublisher:
    """Publishes, then reports a timeout: the ambiguous case (the events are in the stream)."""

    def __init__(self, producer: Producer, failures: int) -> None:
        self.producer, self.failures = producer, failures

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        entry_ids = await self.producer.publish_many(events)
        if self.failures:
            self.failures -= 1
            raise PublishError("no reply within the bound", ambiguous=True)
        return entry_ids


async def test_an_ambiguous_publish_failure_resends_the_same_event_ids(
    backend: Backend, producer: Producer, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    ids = await add_changes(backend, 30)
    async with backend.store() as store:
        relay = OutboxRelay(
            store, FlakyPublisher(producer, failures=1), RelayConfig(backoff_base_s=0.01)
        )
        await relay.run(until_empty=True)
        assert await store.backlog() == 0
    published = stream_event_ids(redis_client, stream_keys)
    assert Counter(published) == Counter({event_id: 2 for event_id in ids})  # no new ids
    assert relay.stats.publish_errors == 1
    assert {attempts for _, _, attempts in await backend.rows()} == {2}


async def test_a_row_without_a_valid_event_is_set_aside_and_blocks_nothing(
    backend: Backend, producer: Producer, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    await backend.raw_insert("01JBROKENROW0000000000000", '{"kind": "keys", "namespace": "nope"}')
    ids = await add_changes(backend, 5)
    async with backend.store() as store:
        relay = OutboxRelay(store, producer)
        await relay.run(until_empty=True)
        failed = await store.failed()
        assert await store.backlog() == 0
    assert stream_event_ids(redis_client, stream_keys) == ids
    assert [(event_id, "outbox row" in error) for _, event_id, error in failed] == [
        ("01JBROKENROW0000000000000", True)
    ]
    assert relay.stats.failed_rows == 1


class SlowPublisher:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        await asyncio.sleep(0.02)  # long enough for the other relay to claim meanwhile
        return await self.producer.publish_many(events)


async def test_two_relays_share_the_table_without_publishing_a_row_twice(
    backend: Backend, producer: Producer, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    ids = await add_changes(backend, 400, per_tx=50)
    first, second = backend.store(relay_name="relay-a"), backend.store(relay_name="relay-b")
    async with first, second:
        relays = [
            OutboxRelay(store, SlowPublisher(producer), RelayConfig(batch_size=20))
            for store in (first, second)
        ]
        await asyncio.gather(*(relay.run(until_empty=True) for relay in relays))
    published = stream_event_ids(redis_client, stream_keys)
    assert sorted(published) == sorted(ids)  # every row exactly once
    assert all(relay.stats.published > 0 for relay in relays)  # both took a share


async def test_an_idle_relay_wakes_for_a_committed_row(
    backend: Backend, producer: Producer, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    async with backend.store() as store:
        # PostgreSQL wakes the relay by NOTIFY; SQLite polls.
        poll = 5.0 if backend.name == "postgres" else 0.05
        relay = OutboxRelay(store, producer, RelayConfig(poll_interval_s=poll))
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(0.2)  # idle, waiting
        (event_id,) = await add_changes(backend, 1)
        started = time.monotonic()
        while stream_event_ids(redis_client, stream_keys) != [event_id]:
            assert time.monotonic() - started < 2.0, "the committed row was not relayed"
            await asyncio.sleep(0.01)
        await relay.stop()
        await task


async def test_an_idle_relay_stops_without_waiting_out_its_poll(
    backend: Backend, producer: Producer
) -> None:
    async with backend.store() as store:
        # A poll far longer than the grace period: a relay that waited it out would be
        # cancelled at the grace period, and awaiting it would raise CancelledError.
        relay = OutboxRelay(store, producer, RelayConfig(poll_interval_s=60.0))
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(0.2)  # idle, waiting for rows
        await relay.stop()
        await task  # ended by itself
        assert not task.cancelled()


async def test_rows_sent_long_ago_are_purged(backend: Backend, producer: Producer) -> None:
    await add_changes(backend, 12)
    async with backend.store() as store:
        await OutboxRelay(store, producer).run(until_empty=True)
        assert await store.purge_sent(older_than_ms=0) == 0  # sent just now: kept
        assert await store.purge_sent(older_than_ms=int(time.time() * 1000) + 1000) == 12
    assert await backend.rows() == []


def test_database_urls_pick_the_backend_and_bad_ones_say_what_to_use() -> None:
    assert type(open_store("sqlite:///var/app.db")).__name__ == "SQLiteOutbox"
    assert type(open_store("postgresql://u@h/db")).__name__ == "PostgresOutbox"
    with pytest.raises(ConfigError, match=r"sqlite:// or postgresql://") as info:
        open_store("mysql://u:secret@h/db")
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="names no file"):
        open_store("sqlite://")
    with pytest.raises(ConfigError, match="identifier"):
        table_name("outbox; DROP TABLE users")


async def test_the_outbox_commands_create_the_table_and_report_the_backlog(
    backend: Backend, redis_url: str, stream_keys: StreamKeys
) -> None:
    runner = CliRunner()
    db = ["--database", backend.url, "--table", backend.table]
    created = await asyncio.to_thread(runner.invoke, app, ["outbox", "init", *db])
    assert created.exit_code == 0 and "ready" in created.stdout  # idempotent
    await add_changes(backend, 3)
    await backend.raw_insert("01JBROKENROW0000000000001", "not json")
    status = await asyncio.to_thread(runner.invoke, app, ["outbox", "status", *db, "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout)["backlog"] == 4
    relay = ["outbox", "relay", *db, "--redis-url", redis_url, "--prefix", stream_keys.prefix,
             "--registry", str(REGISTRY_FILE)]  # fmt: skip
    done = await asyncio.to_thread(runner.invoke, app, [*relay, "--once"])
    assert done.exit_code == 0 and "relayed 3 events" in done.stdout
    status = await asyncio.to_thread(runner.invoke, app, ["outbox", "status", *db, "--json"])
    report = json.loads(status.stdout)
    assert status.exit_code == 1 and report["backlog"] == 0  # a failed row: exit 1
    assert [row["event_id"] for row in report["failed"]] == ["01JBROKENROW0000000000001"]


def test_the_outbox_relay_refuses_a_database_it_cannot_use() -> None:
    result = CliRunner().invoke(
        app,
        [
            "outbox",
            "relay",
            "--database",
            "mysql://h/db",
            "--once",
            "--registry",
            str(REGISTRY_FILE),
        ],
    )
    assert result.exit_code == 2 and "sqlite:// or postgresql://" in result.output
