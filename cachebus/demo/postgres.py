"""The demo's PostgreSQL: an "admin fix" that publishes nothing still reaches every cache.

An ``admin`` process changes rows of ``public.risk_limits`` by hand, as a back-office script or
a fix in ``psql`` would: no publish, no outbox row. A ``cdc`` process (the library's
:class:`~cachebus.producers.cdc.CdcRelay`, what ``cachebus cdc`` runs) reads the commit log
through a logical replication slot and publishes the invalidations; the bot and the indexer
cache ``risk_limits`` like any other namespace, loading misses from PostgreSQL.

Where the database comes from, in order: ``--no-postgres`` (none: how the demo runs where
there is no PostgreSQL), ``--database`` / ``CACHEBUS_DEMO_DATABASE_URL`` (a database with
``wal_level=logical``; the demo creates ``public.risk_limits`` there and drops its slot and
publication at the end), else the local binaries (``pg_config --bindir``) started on a free
port with ``wal_level=logical`` in a temporary directory, removed at the end. Without any, or
without the ``cdc``/``outbox`` extras (psycopg2, asyncpg), the demo says why in one line and
runs on SQLite and the outbox alone. A database that was given but cannot be used is an error.
"""

from __future__ import annotations

import importlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachebus.contracts.errors import CachebusError, ConfigError
from cachebus.contracts.registry import Registry
from cachebus.demo.world import PG_NAMESPACE, WorldShape

if TYPE_CHECKING:
    from cachebus.testing.postgres import PostgresServer

__all__ = ["DATABASE_ENV", "PG_TABLE", "CdcLedger", "DemoPostgres", "open_postgres"]

DATABASE_ENV = "CACHEBUS_DEMO_DATABASE_URL"
PG_TABLE = "public.risk_limits"
#: The name the relay publishes under (the events' ``producer``).
CDC_PRODUCER = "cdc"


@dataclass(slots=True)
class DemoPostgres:
    """The database of one run: its table, publication and slot (all the run's own)."""

    dsn: str
    where: str
    server: PostgresServer | None = None
    slot: str = ""
    publication: str = ""

    def _connect(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(self.dsn, connect_timeout=5)
        conn.autocommit = True
        return conn

    def prepare(self, shape: WorldShape) -> None:
        """The table (every limit at version 0), its publication and the slot. The slot
        exists before anyone writes: every admin change is in it, whenever the relay starts."""
        import psycopg2

        try:
            self._prepare(shape)
        except psycopg2.Error as exc:  # e.g. a given database's user may not create tables
            raise ConfigError(
                f"{self.where}: cannot create the demo's table, publication and slot: "
                f"{str(exc).strip()} (needs CREATE on public and REPLICATION)"
            ) from None

    def _prepare(self, shape: WorldShape) -> None:
        from cachebus.producers.cdc import database as db

        token = secrets.token_hex(3)
        self.slot, self.publication = f"cachebus_demo_{token}", f"cachebus_demo_{token}"
        rows = [(shape.risk_limit(m).id,) for m in range(shape.limits)]
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {PG_TABLE} "
                "(market_id text PRIMARY KEY, version bigint NOT NULL DEFAULT 0)"
            )
            cur.executemany(
                f"INSERT INTO {PG_TABLE} (market_id, version) VALUES (%s, 0) "
                "ON CONFLICT (market_id) DO UPDATE SET version = 0",
                rows,
            )
            db.refuse(db.ensure_publication(cur, self.publication, [PG_TABLE], create=True))
            db.create_slot(cur, self.slot)
        finally:
            conn.close()

    def versions(self) -> dict[tuple[str, str], int]:
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT market_id, version FROM {PG_TABLE}")
            return {(PG_NAMESPACE, ident): int(v) for ident, v in cur.fetchall()}
        finally:
            conn.close()

    def close(self) -> str:
        """A local server goes with its directory; a given database gets its WAL back: the
        slot (once the stopped relay's walsender let go of it) and the publication. Returns
        what could not be tidied ("": all), with the statement to run. Idempotent."""
        if self.server is not None:
            self.server.close()
            self.server = None
            return ""
        if not self.slot:
            return ""
        import psycopg2

        try:
            self._drop()
        except psycopg2.Error as exc:
            return (
                f"could not drop the demo's slot {self.slot} ({str(exc).strip()}): it keeps "
                f"WAL; run SELECT pg_drop_replication_slot('{self.slot}');"
            )
        self.slot = ""
        return ""

    def _drop(self) -> None:
        conn = self._connect()
        try:
            cur = conn.cursor()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
                )
                row = cur.fetchone()
                if row is None or not row[0]:
                    break
                time.sleep(0.1)
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (self.slot,),
            )
            cur.execute(f"DROP PUBLICATION IF EXISTS {self.publication}")
        finally:
            conn.close()


def _missing_extra() -> str:
    for module, extra in (("psycopg2", "cdc"), ("asyncpg", "outbox")):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is missing (pip install 'cachebus[{extra}]')"
    return ""


def open_postgres(
    *, enabled: bool, database: str | None, registry: Registry
) -> tuple[DemoPostgres | None, str]:
    """The run's database (started when local), or None; and the one line that says which."""
    if not enabled:
        return None, "PostgreSQL: off (--no-postgres); the demo runs on SQLite and the outbox"
    if PG_NAMESPACE not in registry or not any(
        m.namespace == PG_NAMESPACE and m.table == PG_TABLE for m in registry.tables
    ):
        reason = f"{registry.source} maps no {PG_TABLE} to {PG_NAMESPACE}"
        return None, f"PostgreSQL: not used ({reason}); the demo runs on SQLite and the outbox"
    missing = _missing_extra()
    if missing:
        if database:
            raise ConfigError(f"--database needs PostgreSQL's drivers: {missing}")
        return None, f"PostgreSQL: not used ({missing}); the demo runs on SQLite and the outbox"
    if database:
        found = DemoPostgres(database, "the given database (--database)")
        _check_logical(found)
        return found, f"PostgreSQL: {found.where}"
    from cachebus.testing.postgres import PostgresServer, find_postgres_bindir

    bindir = find_postgres_bindir()
    if bindir is None:
        return None, (
            "PostgreSQL: none found (no initdb/postgres: pg_config --bindir); the demo runs on "
            "SQLite and the outbox"
        )
    try:
        server = PostgresServer(bindir=bindir).start()
    except (RuntimeError, OSError, KeyError) as exc:  # KeyError: no 'postgres' OS user
        raise CachebusError(
            f"the local PostgreSQL ({bindir}) did not start: {str(exc).strip()[-600:]}; "
            "--no-postgres runs the demo without it"
        ) from None
    version = bindir.parent.name if bindir.parent.name.isdigit() else str(bindir)
    where = f"a local PostgreSQL {version} on port {server.port} (wal_level=logical)"
    return DemoPostgres(server.dsn, where, server), f"PostgreSQL: {where}"


def _check_logical(pg: DemoPostgres) -> None:
    import psycopg2

    try:
        conn = pg._connect()
    except psycopg2.Error as exc:
        raise ConfigError(f"--database: cannot connect: {str(exc).strip()}") from None
    try:
        cur = conn.cursor()
        cur.execute("SHOW wal_level")
        level = cur.fetchone()[0]
    finally:
        conn.close()
    if level != "logical":
        raise ConfigError(
            f"--database: wal_level is {level}; the commit-log relay needs wal_level=logical "
            "(ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)"
        )


class CdcLedger:
    """What the relay published, from its ledger (``published-cdc.log``).

    The stream cannot tell: the services trim what every group acknowledged. The relay writes
    each event's line *before* sending it; a line whose send failed is sent again (the same
    id, from the commit's LSN) by this relay or the next, so every line ends up in the
    stream, and the relay's position in Redis (its MULTI/EXEC with the events) says when.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: event id -> namespace, of row changes' events and of gap flushes.
        self.events: dict[str, str] = {}
        self.gaps: set[str] = set()
        #: The end LSN of the last transaction logged: published once the position reaches it.
        self.last_lsn = 0

    def read(self) -> CdcLedger:
        self.events.clear()
        self.gaps.clear()
        lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        for line in lines:
            parts = line.decode(errors="replace").split()
            if len(parts) != 4:
                continue  # a line cut by a SIGKILL: its event is logged again before its send
            event_id, namespace, lsn, kind = parts
            self.events[event_id] = namespace
            self.last_lsn = max(self.last_lsn, int(lsn))
            if kind == "gap":
                self.gaps.add(event_id)
        return self

    @property
    def row_events(self) -> int:
        return len(self.events) - len(self.gaps)
