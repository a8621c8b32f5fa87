"""The PostgreSQL outbox (asyncpg): the production one.

Relays lock the rows they publish: ``SELECT ... FOR UPDATE SKIP LOCKED`` in a transaction that
stays open while they publish and commits once the rows are marked sent. Several relays share
the table without coordination (each skips the others' locked rows), and a relay that dies
mid-batch loses its connection, so PostgreSQL rolls its transaction back and the rows are
unlocked and unsent again at once. Writers are never blocked: their inserts lock nothing the
relay reads.

Each ``add()`` also sends a ``NOTIFY`` (delivered when the service commits, dropped if it
rolls back) so an idle relay wakes at once instead of at its next poll.

Service side: ``async with conn.transaction(): ...; await outbox.add(conn, ...)`` with the
service's ``asyncpg`` connection (a pooled one works too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cachebus.contracts.errors import ConfigError, OutboxError
from cachebus.contracts.registry import Registry
from cachebus.producers.outbox.base import DEFAULT_TABLE, Claim, OutboxRow, OutboxStore, now_ms

__all__ = ["PostgresOutbox"]


def _asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - the extra is missing
        raise ConfigError(
            "the PostgreSQL outbox needs asyncpg: pip install 'cachebus[outbox]'"
        ) from None
    return asyncpg


class PostgresOutbox(OutboxStore):
    """An outbox table in PostgreSQL. ``dsn`` is needed by the relay side only."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        stream: str = "inval",
        producer_name: str = "outbox",
        registry: Registry | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(table=table, stream=stream, producer_name=producer_name, registry=registry)
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        #: The NOTIFY channel: the table name, which is a checked identifier.
        self.channel = self.table.replace(".", "_")
        self._conn: Any = None
        self._wake = asyncio.Event()

    # ---- schema ------------------------------------------------------------------------
    def schema_statements(self) -> list[str]:
        """The DDL, for services that run their own migrations."""
        t = self.table
        name = t.rpartition(".")[2]
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id BIGSERIAL PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                stream TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                sent_at_ms BIGINT,
                entry_id TEXT,
                failed_at_ms BIGINT,
                last_error TEXT
            )""",
            f"CREATE INDEX IF NOT EXISTS {name}_unsent ON {t} (stream, id) "
            "WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL",
        ]

    async def create_schema(self) -> None:
        async with self._mapped("create the outbox table"):
            conn = await self._connection()
            async with conn.transaction():
                for statement in self.schema_statements():
                    await conn.execute(statement)

    # ---- writer side -------------------------------------------------------------------
    def _require_transaction(self, conn: Any) -> None:
        check = getattr(conn, "is_in_transaction", None)
        if check is None or not check():
            raise ConfigError(
                "outbox.add() needs the connection's open transaction, the one that changes "
                "your data: `async with conn.transaction(): <your write>; await "
                "outbox.add(conn, ...)`; outside a transaction the row would commit on its own"
            )

    async def _insert(self, conn: Any, rows: Sequence[tuple[str, str, str, int]]) -> None:
        async with self._mapped("write outbox rows"):
            await conn.executemany(
                f"INSERT INTO {self.table} (event_id, stream, payload, created_at_ms) "
                "VALUES ($1, $2, $3, $4)",
                rows,
            )
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, self.stream)

    # ---- relay side ----------------------------------------------------------------------
    async def open(self) -> None:
        async with self._mapped("connect"):
            await self._connection()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):  # closing a broken connection may raise
                await asyncio.wait_for(conn.close(), 5)

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self.dsn is None:
            raise ConfigError("this PostgresOutbox has no dsn: give PostgresOutbox(dsn) to relay")
        asyncpg = _asyncpg()
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        await conn.add_listener(self.channel, self._notified)
        self._conn = conn
        return conn

    def _notified(self, *args: Any) -> None:
        if args and args[-1] == self.stream:
            self._wake.set()

    async def wait_for_rows(self, seconds: float) -> None:
        """Return at the next NOTIFY for this stream, or after ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._wake.clear()

    @contextlib.asynccontextmanager
    async def _mapped(self, what: str) -> AsyncIterator[None]:
        asyncpg = _asyncpg()
        try:
            yield
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            hint = ""
            if isinstance(exc, asyncpg.UndefinedTableError):
                hint = " (create it: outbox.create_schema() or `cachebus outbox init`)"
            raise OutboxError(f"PostgreSQL outbox: could not {what}: {exc}{hint}") from exc

    async def claim(self, limit: int) -> Claim | None:
        async with self._mapped("claim outbox rows"):
            conn = await self._connection()
            tx = conn.transaction()
            await tx.start()
            try:
                records = await conn.fetch(
                    f"SELECT id, event_id, payload, attempts FROM {self.table} "
                    "WHERE stream = $1 AND sent_at_ms IS NULL AND failed_at_ms IS NULL "
                    "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    self.stream,
                    limit,
                )
            except BaseException:
                await self._rollback(tx)
                raise
            if not records:
                await tx.rollback()
                return None
        rows = tuple(OutboxRow(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in records)
        return Claim(rows, (conn, tx))

    async def _end(self, claim: Claim, what: str, statement: str, *args: Any) -> None:
        # The claim's own connection: if it died, PostgreSQL already unlocked the rows.
        conn, tx = claim.handle
        async with self._mapped(what):
            try:
                await conn.execute(statement, *args)
            except BaseException:
                await self._rollback(tx)
                raise
            await tx.commit()

    @staticmethod
    async def _rollback(tx: Any) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone: PG rolls back
            await tx.rollback()

    async def mark_sent(self, claim: Claim, sent: Sequence[tuple[int, str]]) -> None:
        await self._end(
            claim,
            "mark outbox rows sent",
            f"UPDATE {self.table} AS o SET sent_at_ms = $1, entry_id = s.entry_id, "
            "attempts = o.attempts + 1 "
            "FROM unnest($2::bigint[], $3::text[]) AS s(id, entry_id) WHERE o.id = s.id",
            now_ms(),
            [row_id for row_id, _ in sent],
            [entry_id for _, entry_id in sent],
        )

    async def release(self, claim: Claim, error: str) -> None:
        await self._end(
            claim,
            "release outbox rows",
            f"UPDATE {self.table} SET attempts = attempts + 1, last_error = $1 "
            "WHERE id = ANY($2::bigint[]) AND failed_at_ms IS NULL",
            error[:2000],
            [row.row_id for row in claim.rows],
        )

    async def mark_failed(self, claim: Claim, row_ids: Sequence[int], error: str) -> None:
        if not row_ids:
            return
        conn, _ = claim.handle
        async with self._mapped("set failed outbox rows aside"):
            await conn.execute(
                f"UPDATE {self.table} SET failed_at_ms = $1, last_error = $2 "
                "WHERE id = ANY($3::bigint[])",
                now_ms(),
                error[:2000],
                list(row_ids),
            )

    # ---- administration ----------------------------------------------------------------
    async def backlog(self) -> int:
        async with self._mapped("count unsent rows"):
            conn = await self._connection()
            count = await conn.fetchval(
                f"SELECT COUNT(*) FROM {self.table} "
                "WHERE stream = $1 AND sent_at_ms IS NULL AND failed_at_ms IS NULL",
                self.stream,
            )
        return int(count)

    async def failed(self) -> list[tuple[int, str, str]]:
        async with self._mapped("list failed rows"):
            conn = await self._connection()
            records = await conn.fetch(
                f"SELECT id, event_id, last_error FROM {self.table} "
                "WHERE stream = $1 AND failed_at_ms IS NOT NULL ORDER BY id",
                self.stream,
            )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in records]

    async def purge_sent(self, older_than_ms: int, limit: int = 10_000) -> int:
        async with self._mapped("purge sent rows"):
            conn = await self._connection()
            status = await conn.execute(
                f"DELETE FROM {self.table} WHERE id IN (SELECT id FROM {self.table} "
                "WHERE stream = $1 AND sent_at_ms IS NOT NULL AND sent_at_ms < $2 LIMIT $3)",
                self.stream,
                older_than_ms,
                limit,
            )
        return int(str(status).rsplit(" ", 1)[-1] or 0)

    def __repr__(self) -> str:
        return f"PostgresOutbox(table={self.table!r}, stream={self.stream!r})"
