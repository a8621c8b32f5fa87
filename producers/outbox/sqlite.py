"""The SQLite outbox (aiosqlite): the embedded default.

SQLite has one writer at a time, so relays coordinate by *claiming* rows in a short write
transaction (``BEGIN IMMEDIATE``: ``claimed_by``, ``claimed_until_ms``), publish outside any
transaction (service writers are never blocked by a publish), then mark the rows sent in
another short one. A claim that outlives ``claim_ttl_s`` (its relay died) is taken by any
relay; a relay restarting under the same ``relay_name`` takes back its own claims at once.
Give every relay process its own stable name.

Service side: ``await outbox.add(conn, ...)`` with the service's ``aiosqlite.Connection``
inside its transaction (after its own write, or after ``BEGIN``), then ``await conn.commit()``.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cachebus.contracts.errors import ConfigError, OutboxError
from cachebus.contracts.registry import Registry
from cachebus.producers.outbox.base import DEFAULT_TABLE, Claim, OutboxRow, OutboxStore, now_ms

__all__ = ["SQLiteOutbox"]


def _default_relay_name() -> str:
    return f"relay-{socket.gethostname().split('.')[0] or 'host'}"


class SQLiteOutbox(OutboxStore):
    """An outbox table in a SQLite database file."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        table: str = DEFAULT_TABLE,
        stream: str = "inval",
        producer_name: str = "outbox",
        registry: Registry | None = None,
        relay_name: str | None = None,
        claim_ttl_s: float = 30.0,
        busy_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(table=table, stream=stream, producer_name=producer_name, registry=registry)
        if claim_ttl_s <= 0 or busy_timeout_s <= 0:
            raise ConfigError("claim_ttl_s and busy_timeout_s must be positive")
        self.path = None if path is None else Path(path)
        self.relay_name = relay_name or _default_relay_name()
        self.claim_ttl_ms = int(claim_ttl_s * 1000)
        self.busy_timeout_ms = int(busy_timeout_s * 1000)
        self._db: Any = None

    # ---- schema ------------------------------------------------------------------------
    def schema_statements(self) -> list[str]:
        """The DDL, for services that run their own migrations."""
        t = self.table
        schema, _, name = t.rpartition(".")
        index = f"{schema}.{name}_unsent" if schema else f"{name}_unsent"
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                stream TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                claimed_by TEXT,
                claimed_until_ms INTEGER,
                sent_at_ms INTEGER,
                entry_id TEXT,
                failed_at_ms INTEGER,
                last_error TEXT
            )""",
            f"CREATE INDEX IF NOT EXISTS {index} ON {name} (stream, id) "
            "WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL",
        ]

    async def create_schema(self) -> None:
        async with self._mapped("create the outbox table"):
            db = await self._connection()
            for statement in self.schema_statements():
                await db.execute(statement)

    # ---- writer side -------------------------------------------------------------------
    def _require_transaction(self, conn: Any) -> None:
        if not getattr(conn, "in_transaction", False):
            raise ConfigError(
                "outbox.add() needs the connection's open transaction, the one that changes "
                "your data: write your change first (or execute 'BEGIN'), then add(), then "
                "commit(); outside a transaction the outbox row would commit on its own"
            )

    async def _insert(self, conn: Any, rows: Sequence[tuple[str, str, str, int]]) -> None:
        async with self._mapped("write outbox rows"):
            await conn.executemany(
                f"INSERT INTO {self.table} (event_id, stream, payload, created_at_ms) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    # ---- relay side ----------------------------------------------------------------------
    async def open(self) -> None:
        async with self._mapped("open the outbox database"):
            await self._connection()

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    async def _connection(self) -> Any:
        if self._db is None:
            if self.path is None:
                raise ConfigError(
                    "this SQLiteOutbox has no database path: give SQLiteOutbox(path) to relay"
                )
            import aiosqlite  # a dependency; imported here so publishing never loads it

            # Autocommit: this module opens its transactions itself (BEGIN IMMEDIATE).
            db = await aiosqlite.connect(self.path, isolation_level=None)
            await db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            self._db = db
        return self._db

    @contextlib.asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[Any]:
        async with self._mapped(what):
            db = await self._connection()
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def _mapped(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            hint = ""
            if "no such table" in str(exc):
                hint = " (create it: outbox.create_schema() or `cachebus outbox init`)"
            raise OutboxError(f"SQLite outbox {self.path}: could not {what}: {exc}{hint}") from exc

    async def claim(self, limit: int) -> Claim | None:
        t = self.table
        async with self._transaction("claim outbox rows") as db:
            now = now_ms()
            cursor = await db.execute(
                f"SELECT id, event_id, payload, attempts FROM {t} "
                "WHERE stream = ? AND sent_at_ms IS NULL AND failed_at_ms IS NULL "
                "AND (claimed_until_ms IS NULL OR claimed_until_ms < ? OR claimed_by = ?) "
                "ORDER BY id LIMIT ?",
                (self.stream, now, self.relay_name, limit),
            )
            rows = [
                OutboxRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]))
                for r in await cursor.fetchall()
            ]
            if not rows:
                return None
            ids = [row.row_id for row in rows]
            await db.execute(
                f"UPDATE {t} SET claimed_by = ?, claimed_until_ms = ? "
                f"WHERE id IN ({','.join('?' * len(ids))})",
                (self.relay_name, now + self.claim_ttl_ms, *ids),
            )
        return Claim(tuple(rows))

    async def mark_sent(self, claim: Claim, sent: Sequence[tuple[int, str]]) -> None:
        if not sent:
            return
        at = now_ms()
        async with self._transaction("mark outbox rows sent") as db:
            await db.executemany(
                f"UPDATE {self.table} SET sent_at_ms = ?, entry_id = ?, "
                "attempts = attempts + 1, claimed_by = NULL, claimed_until_ms = NULL "
                "WHERE id = ? AND sent_at_ms IS NULL",
                [(at, entry_id, row_id) for row_id, entry_id in sent],
            )

    async def release(self, claim: Claim, error: str) -> None:
        ids = [row.row_id for row in claim.rows]
        async with self._transaction("release outbox rows") as db:
            await db.execute(
                f"UPDATE {self.table} SET attempts = attempts + 1, last_error = ?, "
                "claimed_by = NULL, claimed_until_ms = NULL "
                f"WHERE id IN ({','.join('?' * len(ids))}) "
                "AND sent_at_ms IS NULL AND failed_at_ms IS NULL",
                (error[:2000], *ids),
            )

    async def mark_failed(self, claim: Claim, row_ids: Sequence[int], error: str) -> None:
        if not row_ids:
            return
        async with self._transaction("set failed outbox rows aside") as db:
            await db.execute(
                f"UPDATE {self.table} SET failed_at_ms = ?, last_error = ?, "
                "claimed_by = NULL, claimed_until_ms = NULL "
                f"WHERE id IN ({','.join('?' * len(row_ids))})",
                (now_ms(), error[:2000], *row_ids),
            )

    # ---- administration ----------------------------------------------------------------
    async def backlog(self) -> int:
        async with self._mapped("count unsent rows"):
            db = await self._connection()
            cursor = await db.execute(
                f"SELECT COUNT(*) FROM {self.table} "
                "WHERE stream = ? AND sent_at_ms IS NULL AND failed_at_ms IS NULL",
                (self.stream,),
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def failed(self) -> list[tuple[int, str, str]]:
        async with self._mapped("list failed rows"):
            db = await self._connection()
            cursor = await db.execute(
                f"SELECT id, event_id, last_error FROM {self.table} "
                "WHERE stream = ? AND failed_at_ms IS NOT NULL ORDER BY id",
                (self.stream,),
            )
            rows = await cursor.fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def purge_sent(self, older_than_ms: int, limit: int = 10_000) -> int:
        async with self._transaction("purge sent rows") as db:
            cursor = await db.execute(
                f"DELETE FROM {self.table} WHERE id IN (SELECT id FROM {self.table} "
                "WHERE stream = ? AND sent_at_ms IS NOT NULL AND sent_at_ms < ? LIMIT ?)",
                (self.stream, older_than_ms, limit),
            )
            return int(cursor.rowcount)

    def __repr__(self) -> str:
        return f"SQLiteOutbox({str(self.path)!r}, table={self.table!r}, stream={self.stream!r})"
