"""``cachebus cdc``: relay PostgreSQL's commit log (a logical replication slot) to the stream.

Examples::

    cachebus cdc --database postgresql://relay@db/app --redis-url redis://redis:6379/0 --create
    cachebus cdc --database ... --check          # refuse or accept the mappings, then exit
    cachebus cdc --database ... --drop-slot      # retiring the relay: free the retained WAL

The tables and keys come from the registry file's ``[tables."schema.table"]`` entries. The
first SIGTERM/SIGINT stops after the batch in flight (what was not confirmed is read again by
the next relay, with the same event ids); a second one exits at once. A second relay on the
same slot waits as a standby. Exit codes: 0 stopped, 1 failed, 2 wrong configuration.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from cachebus.contracts.errors import CachebusError, ConfigError
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import RedisSettings, create_sync_pool
from cachebus.producers._core import producer_settings, publish_bound
from cachebus.registry_cmd import REGISTRY_OPT, load_cli_registry

__all__ = ["cdc"]

EXIT_FAILED = 1
EXIT_CONFIG = 2
log = logging.getLogger("cachebus.cdc")


def _fail(exc: Exception) -> None:
    typer.echo(f"cachebus cdc: {exc}", err=True)
    sys.exit(EXIT_CONFIG if isinstance(exc, ConfigError | ValueError) else EXIT_FAILED)


def cdc(
    database: str = typer.Option(
        ...,
        "--database",
        envvar="CACHEBUS_CDC_DATABASE_URL",
        help="postgresql://user@host/db (a user with REPLICATION). (env CACHEBUS_CDC_DATABASE_URL)",
    ),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", "--redis-url", envvar="CACHEBUS_REDIS_URL", help="Stream Redis."
    ),
    stream: str = typer.Option("inval", "--stream", envvar="CACHEBUS_STREAM", help="Stream."),
    prefix: str = typer.Option("cb", "--prefix", envvar="CACHEBUS_PREFIX", help="Key prefix."),
    slot: str = typer.Option("cachebus", "--slot", help="Logical replication slot."),
    publication: str = typer.Option("cachebus", "--publication", help="Publication."),
    create: bool = typer.Option(
        False, "--create", help="Create the publication (or add tables) and the slot."
    ),
    check: bool = typer.Option(False, "--check", help="Check the mappings and tables, exit."),
    drop_slot: bool = typer.Option(
        False, "--drop-slot", help="Drop the slot (retiring the relay), exit."
    ),
    registry_path: Path = REGISTRY_OPT,
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Relay PostgreSQL's commit log (a logical replication slot) to the stream."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registry = load_cli_registry(registry_path, "cdc")
    from cachebus.producers.cdc import CdcConfig, CdcRelay

    try:
        config = CdcConfig(dsn=database, slot=slot, publication=publication, create=create)
        settings = producer_settings(RedisSettings.from_url(redis_url))
        import redis

        client = redis.Redis(connection_pool=create_sync_pool(settings))
        relay = CdcRelay.to_redis(
            config,
            registry,
            client,
            stream=stream,
            keys=StreamKeys(prefix),
            timeout=publish_bound(settings),
        )
        if drop_slot:
            _drop(relay)
            return
        if check:
            relay.check()
            typer.echo(f"cachebus cdc: {len(registry.tables)} mappings can be relayed")
            return
        _serve(relay)
    except CachebusError as exc:
        _fail(exc)
    except Exception as exc:  # psycopg2's errors: the database refused or is unreachable
        if type(exc).__module__.startswith("psycopg2"):
            _fail(CachebusError(f"PostgreSQL: {str(exc).strip()}"))
        raise


def _drop(relay: Any) -> None:
    import psycopg2

    conn = psycopg2.connect(relay.config.dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (relay.config.slot,),
        )
        row = cur.fetchone()
        if row is None:
            typer.echo(f"cachebus cdc: no slot {relay.config.slot}")
            return
        if row[0] is not None:
            raise ConfigError(f"the slot {relay.config.slot} is in use (pid {row[0]}): stop it")
        cur.execute("SELECT pg_drop_replication_slot(%s)", (relay.config.slot,))
        typer.echo(f"cachebus cdc: dropped the slot {relay.config.slot}")
    finally:
        conn.close()


def _serve(relay: Any) -> None:
    signals = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping the relay (signal again to force)")
            relay.stop()
        else:
            os._exit(130)  # nothing unconfirmed is lost: the next relay reads it again

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    # What was imported lives for good: a full collection walking it stalls the stream for
    # a quarter of a second (the commit → stream p99 of `cachebus bench cdc`).
    gc.collect()
    gc.freeze()
    relay.run()
    log.info("relay stopped: %s", relay.stats)
