"""The commit-log relay against a real PostgreSQL: each kind of row change, per mapping, and
the configurations it refuses at start (touching nothing)."""

from __future__ import annotations

import psycopg2
import pytest

from cachebus.contracts.errors import ConfigError, RegistryError
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.testing import eventually
from cachebus.testing.postgres import PostgresServer
from tests.cdc.helpers import (
    TABLES,
    events,
    execute,
    invalidated,
    make_relay,
    new_database,
    running,
    streaming,
)
from tests.harness.readme import readme_block
from tests.harness.registry import REGISTRY_FILE

pytestmark = pytest.mark.timeout(90)


async def test_each_change_invalidates_what_its_mappings_name(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    relay, client = make_relay(dsn, redis_url, stream_keys)
    seen = lambda: invalidated(client, stream_keys)  # noqa: E731
    try:
        with running(relay):
            await streaming(relay)
            # insert: the new row's ids, one per mapping
            execute(
                dsn,
                "INSERT INTO positions (id, user_id, qty) VALUES (1, 42, 3)",
                "INSERT INTO markets VALUES ('m1', 'c1', 'first')",
                "INSERT INTO users VALUES (7, 'ann')",
            )
            want = {
                ("positions", "42:all"),
                ("market", "m1:summary"),
                ("market_by_condition", "c1"),
                ("user", "7:profile"),
            }
            await eventually(lambda: want <= seen(), within=20, what="inserts invalidated")
            # update, key unchanged: the same id again; key changed: the old and the new id
            before = len(events(client, stream_keys))
            execute(dsn, "UPDATE markets SET title = 'renamed' WHERE id = 'm1'")
            execute(dsn, "UPDATE positions SET user_id = 43 WHERE id = 1")
            execute(dsn, "UPDATE users SET telegram_id = 8 WHERE telegram_id = 7")
            execute(dsn, "UPDATE markets SET condition_id = 'c2' WHERE id = 'm1'")
            want = {("positions", "43:all"), ("user", "8:profile"), ("market_by_condition", "c2")}
            await eventually(lambda: want <= seen(), within=20, what="updates invalidated")
            updates = events(client, stream_keys)[before:]
            by_ns = {}
            for event in updates:
                by_ns.setdefault(event.namespace, []).append(set(event.keys))
            assert {"42:all", "43:all"} in by_ns["positions"]  # old and new, one event
            assert {"7:profile", "8:profile"} in by_ns["user"]  # old key from the primary key
            assert {"c1", "c2"} in by_ns["market_by_condition"]
            assert by_ns["market"] == [{"m1:summary"}, {"m1:summary"}]
            # delete: the old row's ids
            before = len(events(client, stream_keys))
            execute(dsn, "DELETE FROM users WHERE telegram_id = 8", "DELETE FROM markets")
            await eventually(
                lambda: len(events(client, stream_keys)) >= before + 3,
                within=20,
                what="deletes invalidated",
            )
            deleted = {
                (e.namespace, k) for e in events(client, stream_keys)[before:] for k in e.keys
            }
            assert deleted == {("user", "8:profile"), ("market", "m1:summary"),
                               ("market_by_condition", "c2")}  # fmt: skip
            # truncate: a flush of every namespace the table maps to
            execute(dsn, "TRUNCATE positions")
            await eventually(
                lambda: ("positions", "*") in seen(), within=20, what="truncate flushed"
            )
            flush = [e for e in events(client, stream_keys) if e.kind == "flush"]
            assert [(f.namespace, f.reason) for f in flush] == [
                ("positions", "truncate public.positions")
            ]
    finally:
        client.close()
    assert relay.stats.gaps == 0


async def test_a_column_filter_skips_updates_of_other_columns(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    relay, client = make_relay(dsn, redis_url, stream_keys)
    try:
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO prices VALUES ('m1', 1.5, 10)")
            await eventually(lambda: relay.stats.transactions >= 1, within=20, what="insert")
            execute(dsn, "UPDATE prices SET volume = 11 WHERE market_id = 'm1'")  # filtered
            execute(dsn, "UPDATE prices SET price = 1.6 WHERE market_id = 'm1'")  # counts
            execute(dsn, "INSERT INTO users VALUES (1, 'marker')")
            await eventually(
                lambda: ("user", "1:profile") in invalidated(client, stream_keys),
                within=20,
                what="the marker after both updates",
            )
        prices = [e for e in events(client, stream_keys) if e.namespace == "prices"]
        assert len(prices) == 2  # the insert and the price change, not the volume change
        assert relay.stats.transactions == 4
    finally:
        client.close()


async def test_one_transaction_is_coalesced_into_one_event_per_namespace(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    relay, client = make_relay(dsn, redis_url, stream_keys)
    try:
        with running(relay):
            await streaming(relay)
            execute(
                dsn,
                "INSERT INTO positions (user_id, qty) "
                "SELECT i % 10, i FROM generate_series(1, 500) i",
                "UPDATE positions SET qty = qty + 1",
            )
            await eventually(lambda: relay.stats.transactions >= 1, within=20, what="relayed")
        (event,) = events(client, stream_keys)
        assert sorted(event.keys) == sorted(f"{i}:all" for i in range(10))
        assert relay.stats.changes == 1000
    finally:
        client.close()


def _refused(dsn: str, redis_url: str, stream_keys: StreamKeys, registry: Registry) -> str:
    relay, client = make_relay(dsn, redis_url, stream_keys, registry=registry)
    try:
        with pytest.raises(ConfigError) as refused:
            relay.run()
        assert client.exists(stream_keys.stream("inval")) == 0  # nothing published
    finally:
        client.close()
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        assert cur.fetchone() == (0,)  # nothing created
        cur.execute("SELECT count(*) FROM pg_publication")
        assert cur.fetchone() == (0,)
    finally:
        conn.close()
    return str(refused.value)


def test_a_mapping_whose_key_column_is_missing_is_refused_at_start(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    text = REGISTRY_FILE.read_text() + TABLES.replace("{user_id}:all", "{owner_id}:all")
    message = _refused(dsn, redis_url, stream_keys, Registry.from_toml(text))
    assert "public.positions has no column owner_id" in message
    assert "user_id" in message  # the columns it has


def test_a_key_outside_the_replica_identity_is_refused_with_the_alter_to_run(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    execute(dsn, "ALTER TABLE positions REPLICA IDENTITY DEFAULT")
    message = _refused(dsn, redis_url, stream_keys, Registry.from_toml(
        REGISTRY_FILE.read_text() + TABLES))  # fmt: skip
    assert "ALTER TABLE public.positions REPLICA IDENTITY FULL;" in message
    assert "lacks user_id" in message


def test_the_registry_file_checks_table_mappings() -> None:
    base = REGISTRY_FILE.read_text()
    with pytest.raises(RegistryError, match="namespace 'nope', which is not declared"):
        Registry.from_toml(base + '[tables."public.t"]\nnamespace = "nope"\nkey = "{id}"\n')
    with pytest.raises(RegistryError, match="does not make ids of namespace 'positions'"):
        Registry.from_toml(base + '[tables."public.t"]\nnamespace = "positions"\nkey = "{id}"\n')
    with pytest.raises(RegistryError, match=r"'schema\.table'"):
        Registry.from_toml(base + '[tables.positions]\nnamespace = "prices"\nkey = "{id}"\n')
    with pytest.raises(RegistryError, match="unknown key 'colums'"):
        Registry.from_toml(
            base + '[tables."public.t"]\nnamespace = "prices"\nkey = "{id}"\ncolums = ["a"]\n'
        )


def test_the_readmes_table_mappings_are_a_valid_registry() -> None:
    registry = Registry.from_toml(REGISTRY_FILE.read_text() + readme_block("cdc-tables"))
    described = [m.describe() for m in registry.tables]
    assert described == [
        "public.positions → positions '{user_id}:all'",
        "public.markets → market '{id}:summary'",
        "public.markets → market_by_condition '{condition_id}'",
        "public.prices → prices '{market_id}' when price change",
    ]


async def test_rows_that_name_no_id_flush_or_skip_never_silently_drop(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    relay, client = make_relay(dsn, redis_url, stream_keys, max_keys_per_transaction=100)
    try:
        with running(relay):
            await streaming(relay)
            # a NULL key column names no item: nothing for that mapping, the other one works
            execute(dsn, "INSERT INTO markets VALUES ('m1', NULL, 'no condition')")
            # a value that cannot be a part of the id (it holds the template's separator):
            # the namespace is flushed
            execute(dsn, "INSERT INTO markets VALUES ('a:b', 'c9', 'odd id')")
            # more ids of one namespace in one transaction than the relay keeps: a flush
            execute(dsn, "INSERT INTO positions (user_id) SELECT g FROM generate_series(1, 150) g")
            await eventually(lambda: relay.stats.transactions >= 3, within=20, what="relayed")
        got = [
            (e.kind, e.namespace, getattr(e, "keys", e.reason)) for e in events(client, stream_keys)
        ]
        assert got[0] == ("keys", "market", ("m1:summary",))
        assert got[1][:2] == ("flush", "market")
        assert "no id for a row" in got[1][2]
        assert got[2] == ("keys", "market_by_condition", ("c9",))
        assert got[3] == ("flush", "positions", "more than 100 ids in one transaction")
        assert len(got) == 4
    finally:
        client.close()
