"""What operators see of the commit-log relay: its metrics, ``cachebus doctor --database``,
and the ``cachebus cdc`` command's answers to a wrong configuration."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
import redis

from cachebus.contracts.keys import StreamKeys
from cachebus.ops._checks import Level
from cachebus.ops.cdc_checks import slot_checks
from cachebus.producers.cdc import CdcConfig, CdcRelay
from cachebus.testing import RedisServer, eventually
from cachebus.testing.postgres import PostgresServer
from tests.cdc.helpers import (
    CDC_REGISTRY,
    TABLES,
    drop_slot,
    execute,
    new_database,
    running,
    streaming,
)
from tests.harness.registry import REGISTRY_FILE
from tests.obs.cli_helpers import cli, cli_json
from tests.obs.otel_helpers import Telemetry

pytestmark = pytest.mark.timeout(90)


async def test_the_relay_reports_retained_wal_lag_and_counts(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    telemetry = Telemetry()
    client = redis.Redis.from_url(redis_url, socket_timeout=5, retry=None)
    config = CdcConfig(dsn=dsn, slot="metered", create=True, metrics_interval_s=0.1)
    relay = CdcRelay.to_redis(
        config, CDC_REGISTRY, client, keys=stream_keys, meter_provider=telemetry.meter_provider
    )
    try:
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) SELECT g FROM generate_series(1, 50) g")
            await eventually(
                lambda: (
                    telemetry.value("cachebus.cdc.transactions") == 1
                    and telemetry.value("cachebus.cdc.slot.retained") > 0
                ),
                within=20,
                what="the transaction counted and the slot's retained WAL observed",
            )
        assert telemetry.value("cachebus.cdc.changes") == 50
        assert telemetry.value("cachebus.cdc.events") == 1
        assert telemetry.value("cachebus.cdc.gaps") == 0
        slot = {"cachebus.cdc.slot": "metered"}
        assert all(attrs == slot for attrs, _ in telemetry.points("cachebus.cdc.slot.lag"))
        await drop_slot(dsn, "metered")
    finally:
        client.close()
        telemetry.close()


def test_doctor_warns_on_an_unbounded_and_a_large_slot(
    logical_postgres: PostgresServer, redis_server: RedisServer
) -> None:
    dsn = new_database(logical_postgres)
    execute(dsn, "SELECT pg_create_logical_replication_slot('retired', 'pgoutput')")
    try:
        execute(dsn, "INSERT INTO positions (user_id) SELECT g FROM generate_series(1, 2000) g")
        by_name = {c.name: c for c in slot_checks(dsn, warn_bytes=1024)}
        assert by_name["cdc_max_slot_wal_keep_size"].level is Level.WARN  # the harness's -1
        retired = by_name["cdc_slot:retired"]
        assert retired.level is Level.WARN
        assert "inactive" in retired.detail
        assert "pg_drop_replication_slot('retired')" in retired.fix
        # the command: with the default threshold the slot is fine, the setting is not
        _, doc = cli_json("doctor", "--redis-url", redis_server.url, "--database", dsn)
        found = {c["name"]: c for c in doc["checks"]}
        assert found["cdc_slot:retired"]["level"] == "ok"
        assert found["cdc_max_slot_wal_keep_size"]["level"] == "warn"
    finally:
        execute(dsn, "SELECT pg_drop_replication_slot('retired')")


def test_the_command_refuses_a_wrong_configuration_with_exit_2(
    logical_postgres: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    dsn = new_database(logical_postgres)
    registry = tmp_path / "cachebus.toml"
    registry.write_text(REGISTRY_FILE.read_text() + TABLES)
    base = ["cdc", "--database", dsn, "--redis-url", redis_url, "--registry", str(registry)]
    # no publication yet, and no --create: nothing is created
    code, _ = cli(*base, "--check")
    assert code == 2
    code, out = cli(*base, "--check", "--create")
    assert code == 0 and "mappings can be relayed" in out
    code, _ = cli(*base, "--slot", "Bad-Name")
    assert code == 2
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_drop_slot_retires_the_relays_slot(
    logical_postgres: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    dsn = new_database(logical_postgres)
    registry = tmp_path / "cachebus.toml"
    registry.write_text(REGISTRY_FILE.read_text() + TABLES)
    execute(dsn, "SELECT pg_create_logical_replication_slot('retire_me', 'pgoutput')")
    base = ["cdc", "--database", dsn, "--redis-url", redis_url, "--registry", str(registry)]
    code, out = cli(*base, "--slot", "retire_me", "--drop-slot")
    assert code == 0 and "dropped the slot retire_me" in out
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'retire_me'")
        assert cur.fetchone() == (0,)
    finally:
        conn.close()
    code, out = cli(*base, "--slot", "retire_me", "--drop-slot")
    assert code == 0 and "no slot retire_me" in out
