"""``cachebus outbox``: create the outbox table, see its backlog, run a relay.

Examples::

    cachebus outbox init --database sqlite:///var/app.db
    cachebus outbox relay --database postgresql://app@db/app --redis-url redis://redis:6379/0
    cachebus outbox status --database postgresql://app@db/app --json

The relay stops on the first SIGTERM/SIGINT after its batch in flight (a second one exits at
once: unsent rows stay unsent and are published by the next relay, with the same event ids).
Exit codes: 0 done, 1 the database or Redis failed (``--once``), 2 wrong configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import typer

from cachebus.contracts.errors import CachebusError, ConfigError
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core.connection import RedisSettings
from cachebus.exits import ExitCode
from cachebus.producers import Producer
from cachebus.producers.outbox import OutboxRelay, OutboxStore, RelayConfig, open_store
from cachebus.producers.outbox.connect import redact_database_url
from cachebus.registry_cmd import REGISTRY_OPT, load_cli_registry

__all__ = ["outbox_app"]


log = logging.getLogger("cachebus.outbox")

outbox_app = typer.Typer(no_args_is_help=True, help="The transactional outbox.")

DATABASE = typer.Option(
    ...,
    "--database",
    envvar="CACHEBUS_OUTBOX_DATABASE_URL",
    help="sqlite:///path.db or postgresql://user@host/db. (env CACHEBUS_OUTBOX_DATABASE_URL)",
)
TABLE = typer.Option("cachebus_outbox", "--table", envvar="CACHEBUS_OUTBOX_TABLE", help="Table.")
STREAM = typer.Option("inval", "--stream", envvar="CACHEBUS_STREAM", help="Stream name.")


def _fail(exc: Exception) -> None:
    typer.echo(f"cachebus outbox: {exc}", err=True)
    sys.exit(ExitCode.USAGE if isinstance(exc, ConfigError | ValueError) else ExitCode.FINDING)


@outbox_app.command("init")
def init(database: str = DATABASE, table: str = TABLE) -> None:
    """Create the outbox table and its index (idempotent)."""

    async def go() -> None:
        async with open_store(database, table=table) as store:
            await store.create_schema()

    try:
        asyncio.run(go())
    except CachebusError as exc:
        _fail(exc)
    typer.echo(f"outbox table {table} ready in {redact_database_url(database)}")


@outbox_app.command("status")
def status(
    database: str = DATABASE,
    table: str = TABLE,
    stream: str = STREAM,
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """Rows not sent yet, and rows set aside as failed (exit 1 if any failed)."""

    async def go() -> tuple[int, list[tuple[int, str, str]]]:
        async with open_store(database, table=table, stream=stream) as store:
            return await store.backlog(), await store.failed()

    try:
        backlog, failed = asyncio.run(go())
    except CachebusError as exc:
        _fail(exc)
        return
    if as_json:
        rows = [{"row_id": r, "event_id": e, "error": err} for r, e, err in failed]
        typer.echo(json.dumps({"stream": stream, "backlog": backlog, "failed": rows}))
    else:
        typer.echo(f"{stream}: {backlog} rows waiting, {len(failed)} failed")
        for row_id, event_id, error in failed:
            typer.echo(f"  failed row {row_id} event {event_id}: {error}")
    sys.exit(ExitCode.FINDING if failed else ExitCode.OK)


@outbox_app.command("relay")
def relay(
    database: str = DATABASE,
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", "--redis-url", envvar="CACHEBUS_REDIS_URL", help="Stream Redis."
    ),
    table: str = TABLE,
    stream: str = STREAM,
    prefix: str = typer.Option("cb", "--prefix", envvar="CACHEBUS_PREFIX", help="Key prefix."),
    batch_size: int = typer.Option(100, "--batch-size", help="Rows per publish round trip."),
    poll_interval: float = typer.Option(0.1, "--poll-interval", help="Idle poll period (s)."),
    relay_name: str = typer.Option(
        None, "--relay-name", envvar="CACHEBUS_RELAY_NAME", help="Stable name (SQLite claims)."
    ),
    claim_ttl: float = typer.Option(30.0, "--claim-ttl", help="SQLite: a dead relay's claim (s)."),
    once: bool = typer.Option(False, "--once", help="Relay what is there, then exit."),
    registry_path: Path = REGISTRY_OPT,
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Move outbox rows to the stream (same event ids) until SIGTERM, or once with --once."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registry = load_cli_registry(registry_path, "outbox relay")
    try:
        config = RelayConfig(batch_size=batch_size, poll_interval_s=poll_interval)
        store = open_store(
            database, table=table, stream=stream, relay_name=relay_name, claim_ttl_s=claim_ttl,
            registry=registry,
        )  # fmt: skip
        RedisSettings.from_url(redis_url)  # a malformed URL is a configuration error
        keys = StreamKeys(prefix)
        code = asyncio.run(_relay(store, redis_url, stream, keys, config, once, registry))
    except CachebusError as exc:
        _fail(exc)
        return
    sys.exit(code)


async def _relay(
    store: OutboxStore, redis_url: str, stream: str, keys: StreamKeys, config: RelayConfig,
    once: bool, registry: Registry,
) -> int:  # fmt: skip
    producer = Producer.from_url(
        redis_url, stream, producer_name="outbox-relay", keys=keys, registry=registry
    )
    relay = OutboxRelay(store, producer, config)
    try:
        await store.open()
        if once:
            while await relay.relay_once():
                pass
            typer.echo(f"relayed {relay.stats.published} events")
            return 0
        return await _serve(relay)
    finally:
        await producer.aclose()
        await store.close()


async def _serve(relay: OutboxRelay) -> int:
    loop = asyncio.get_running_loop()
    signals = 0
    stopping: set[asyncio.Future[None]] = set()

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping the relay (signal again to force)")
            stopping.add(asyncio.ensure_future(relay.stop()))
        else:
            os._exit(130)  # unsent rows stay unsent: the next relay sends them

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    log.info("relaying %r to the stream", relay.store)
    try:
        await relay.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("relay stopped: %s", relay.stats)
    return 0
