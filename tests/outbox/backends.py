"""Both outbox backends behind one test helper: the store, a service connection, its data."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from cachebus.producers.outbox import OutboxStore, PostgresOutbox, SQLiteOutbox
from tests.harness.plugin import IN_CI
from tests.harness.registry import REGISTRY

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def postgres_or_fail() -> str:
    """The test database's DSN; skip without PostgreSQL, fail with CI=true (never skip)."""
    try:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at DATABASE_URL is not available: {exc}"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    await conn.close()
    return DATABASE_URL


class Backend:
    """One database for one test: its outbox table, and the service's ``accounts`` table."""

    name: str
    url: str  # what `cachebus outbox relay --database` takes
    table: str

    def store(self, **options: Any) -> OutboxStore:
        raise NotImplementedError

    def service(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A service connection, already inside a transaction it commits on exit."""
        raise NotImplementedError

    async def setup(self) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        raise NotImplementedError

    async def rows(self) -> list[tuple[str, str | None, int]]:
        """(event_id, entry_id, attempts) of every outbox row, in row order."""
        raise NotImplementedError

    async def raw_insert(self, event_id: str, payload: str) -> None:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "service.db"
        self.url = f"sqlite:///{self.path}"
        self.table = "outbox"

    def store(self, **options: Any) -> OutboxStore:
        options.setdefault("table", self.table)
        return SQLiteOutbox(self.path, **options, registry=REGISTRY)

    @contextlib.asynccontextmanager
    async def service(self) -> AsyncIterator[Any]:
        async with aiosqlite.connect(self.path) as conn:
            await conn.execute("PRAGMA busy_timeout = 5000")
            await conn.execute("BEGIN")
            yield conn
            await conn.commit()

    async def setup(self) -> None:
        async with aiosqlite.connect(self.path) as conn:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER)")
            await conn.commit()
        async with self.store() as store:
            await store.create_schema()

    async def teardown(self) -> None:
        pass

    async def rows(self) -> list[tuple[str, str | None, int]]:
        async with aiosqlite.connect(self.path) as conn:
            cursor = await conn.execute(
                f"SELECT event_id, entry_id, attempts FROM {self.table} ORDER BY id"
            )
            return [(r[0], r[1], r[2]) for r in await cursor.fetchall()]

    async def raw_insert(self, event_id: str, payload: str) -> None:
        async with aiosqlite.connect(self.path) as conn:
            await conn.execute(
                f"INSERT INTO {self.table} (event_id, stream, payload, created_at_ms) "
                "VALUES (?, 'inval', ?, 0)",
                (event_id, payload),
            )
            await conn.commit()


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.url = dsn
        self.schema = f"t{uuid.uuid4().hex[:12]}"
        self.table = f"{self.schema}.outbox"

    def store(self, **options: Any) -> OutboxStore:
        options.setdefault("table", self.table)
        options.pop("relay_name", None)  # rows are locked, not claimed by name
        return PostgresOutbox(self.url, **options, registry=REGISTRY)

    @contextlib.asynccontextmanager
    async def service(self) -> AsyncIterator[Any]:
        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                yield conn
        finally:
            await conn.close()

    async def setup(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE SCHEMA {self.schema}")
            await conn.execute(
                f"CREATE TABLE {self.schema}.accounts (id TEXT PRIMARY KEY, balance INTEGER)"
            )
        finally:
            await conn.close()
        async with self.store() as store:
            await store.create_schema()

    async def teardown(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await conn.close()

    async def rows(self) -> list[tuple[str, str | None, int]]:
        conn = await asyncpg.connect(self.url)
        try:
            records = await conn.fetch(
                f"SELECT event_id, entry_id, attempts FROM {self.table} ORDER BY id"
            )
        finally:
            await conn.close()
        return [(r[0], r[1], r[2]) for r in records]

    async def raw_insert(self, event_id: str, payload: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(
                f"INSERT INTO {self.table} (event_id, stream, payload, created_at_ms) "
                "VALUES ($1, 'inval', $2, 0)",
                event_id,
                payload,
            )
        finally:
            await conn.close()


async def write_change(backend: Backend, conn: Any, account: str, balance: int) -> None:
    """The service's own data change, in the connection's open transaction."""
    if backend.name == "sqlite":
        await conn.execute(
            "INSERT INTO accounts (id, balance) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET balance = excluded.balance",
            (account, balance),
        )
    else:
        assert isinstance(backend, PostgresBackend)
        await conn.execute(
            f"INSERT INTO {backend.schema}.accounts (id, balance) VALUES ($1, $2) "
            "ON CONFLICT (id) DO UPDATE SET balance = excluded.balance",
            account,
            balance,
        )
