"""What the commit-log relay's tests share: a registry with table mappings, a database with
its tables, the relay in a thread, and the stream read back as events."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import redis

from cachebus.contracts.codec import decode_entries
from cachebus.contracts.errors import EventDecodeError
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.producers.cdc import CdcConfig, CdcRelay
from cachebus.testing import eventually
from cachebus.testing.postgres import PostgresServer
from tests.harness.registry import REGISTRY_FILE

TABLES = """
[tables."public.positions"]
namespace = "positions"
key = "{user_id}:all"

[tables."public.markets"]
invalidates = [
  { namespace = "market", key = "{id}:summary" },
  { namespace = "market_by_condition", key = "{condition_id}" },
]

[tables."public.prices"]
namespace = "prices"
key = "{market_id}"
columns = ["price"]

[tables."public.users"]
namespace = "user"
key = "{telegram_id}:profile"
"""

CDC_REGISTRY = Registry.from_toml(
    REGISTRY_FILE.read_text(encoding="utf-8") + TABLES, source="tests/cdc/registry"
)
MAPPED_NAMESPACES = sorted({m.namespace for m in CDC_REGISTRY.tables})

SCHEMA = (
    "CREATE TABLE positions (id bigserial PRIMARY KEY, user_id bigint NOT NULL, qty int)",
    "ALTER TABLE positions REPLICA IDENTITY FULL",
    "CREATE TABLE markets (id text PRIMARY KEY, condition_id text, title text)",
    "ALTER TABLE markets REPLICA IDENTITY FULL",
    "CREATE TABLE prices (market_id text PRIMARY KEY, price numeric, volume bigint)",
    "ALTER TABLE prices REPLICA IDENTITY FULL",
    # the default identity (the primary key) is enough when the key is the primary key
    "CREATE TABLE users (telegram_id bigint PRIMARY KEY, name text)",
)


def new_database(server: PostgresServer, schema: Sequence[str] = SCHEMA) -> str:
    """A fresh database on ``server`` with ``schema``; its DSN."""
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server.dsn)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    dsn = server.dsn_for(name)
    execute(dsn, *schema)
    return dsn


def execute(dsn: str, *statements: str) -> None:
    """Run ``statements`` in one transaction."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def make_relay(
    dsn: str,
    redis_url: str,
    keys: StreamKeys,
    *,
    registry: Registry = CDC_REGISTRY,
    **config: Any,
) -> tuple[CdcRelay, redis.Redis]:
    config.setdefault("create", True)
    config.setdefault("slot", f"s{uuid.uuid4().hex[:12]}")  # slots are the cluster's
    config.setdefault("standby_retry_s", 0.2)
    client = redis.Redis.from_url(redis_url, socket_timeout=5, retry=None)
    relay = CdcRelay.to_redis(CdcConfig(dsn=dsn, **config), registry, client, keys=keys)
    return relay, client


@contextmanager
def running(relay: CdcRelay) -> Iterator[threading.Thread]:
    """``relay.run()`` in a thread, stopped and joined at the end (its error re-raised)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="cdc-relay", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        relay.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the relay did not stop within 15 s"
    if errors:
        raise errors[0]


async def streaming(relay: CdcRelay, within: float = 20.0) -> None:
    """Wait until the relay streams from its slot (changes before that are not in the slot
    when the relay creates it)."""
    await eventually(
        lambda: relay.stats.streaming,
        within=within,
        what="the relay streams",
        diagnose=lambda: repr(relay.stats),
    )


def events(client: redis.Redis, keys: StreamKeys, stream: str = "inval") -> list[Any]:
    """Every event of the stream, decoded (a decoding error fails the test)."""
    entries = client.xrange(keys.stream(stream))
    decoded = decode_entries(entries, registry=CDC_REGISTRY)
    bad = [d for d in decoded if isinstance(d, EventDecodeError)]
    assert not bad, bad
    return [d.event for d in decoded if not isinstance(d, EventDecodeError)]


def invalidated(client: redis.Redis, keys: StreamKeys) -> set[tuple[str, str]]:
    """``(namespace, id)`` of every keys event; ``(namespace, "*")`` for a flush."""
    out: set[tuple[str, str]] = set()
    for event in events(client, keys):
        if event.kind == "keys":
            out.update((event.namespace, k) for k in event.keys)
        elif event.kind == "flush":
            out.add((event.namespace, "*"))
    return out


async def drop_slot(dsn: str, slot: str) -> None:
    """Drop ``slot`` once released: a stopped relay's walsender ends a moment after it."""

    def released() -> bool:
        conn = psycopg2.connect(dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
        finally:
            conn.close()
        return row is None or not row[0]

    await eventually(released, within=20, what=f"slot {slot} released")
    execute(dsn, f"SELECT pg_drop_replication_slot('{slot}')")
