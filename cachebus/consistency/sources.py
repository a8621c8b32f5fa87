"""Sources of truth for the check: what writers change and loaders read.

* :class:`MemorySource`: a dict in this process; a change publishes its invalidation through
  the :class:`~cachebus.producers.Producer` right after, retrying the *same* event until Redis
  takes it.
* :class:`SQLiteSource`: a SQLite table; a change and its invalidation commit together through
  the transactional outbox, and an :class:`~cachebus.producers.outbox.OutboxRelay` publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cachebus.consistency.ledger import Ledger
from cachebus.contracts.errors import PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.factory import Ref
from cachebus.producers import Producer
from cachebus.producers.outbox import OutboxRelay, RelayConfig, SQLiteOutbox
from cachebus.producers.outbox.base import now_ms

__all__ = ["MemorySource", "SQLiteSource", "Source"]

#: A writer gives up publishing one event after this long (the event is then "unpublished").
PUBLISH_PATIENCE_S = 30.0


class Source(ABC):
    def __init__(self, ledger: Ledger, producer: Producer, namespace: str) -> None:
        self.ledger = ledger
        self.producer = producer
        self.namespace = namespace

    @abstractmethod
    async def setup(self, ids: Sequence[str], writers: int) -> None: ...

    @abstractmethod
    async def read(self, ident: str) -> int:
        """The item's current version (what a loader returns)."""

    @abstractmethod
    async def change(self, writer: int, ids: Sequence[str], ref: Ref) -> None:
        """Bump the versions of ``ids`` and have ``ref`` invalidated."""

    @abstractmethod
    async def versions(self) -> dict[str, int]: ...

    async def backlog(self) -> int:
        """Changes committed whose invalidation is not in the stream yet."""
        return 0

    async def close(self) -> None:
        return None

    def _events(self, ref: Ref) -> list[Event]:
        return self.producer.factory.events_for([ref], reason="check")


class MemorySource(Source):
    async def setup(self, ids: Sequence[str], writers: int) -> None:
        self.values = dict.fromkeys(ids, 0)
        at = now_ms()
        for ident in ids:
            self.ledger.committed(ident, 0, at)

    async def read(self, ident: str) -> int:
        return self.values[ident]

    async def change(self, writer: int, ids: Sequence[str], ref: Ref) -> None:
        at = now_ms()
        for ident in ids:
            self.values[ident] += 1
            self.ledger.committed(ident, self.values[ident], at)
        self.ledger.writes += 1
        for event in self._events(ref):
            await self._publish(event)

    async def _publish(self, event: Event) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_PATIENCE_S
        delay = 0.02
        while True:
            try:
                await self.producer.publish(event)  # a retry re-sends the same event_id
            except PublishError:
                if loop.time() >= deadline:
                    self.ledger.unpublished += 1
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self.ledger.published(event.event_id, event.created_at_ms)
            return

    async def versions(self) -> dict[str, int]:
        return dict(self.values)


class SQLiteSource(Source):
    """Items in SQLite (WAL); changes commit with their outbox rows; a relay publishes them."""

    def __init__(self, ledger: Ledger, producer: Producer, namespace: str, path: Path) -> None:
        super().__init__(ledger, producer, namespace)
        self.path = path
        self.outbox = SQLiteOutbox(
            path, table="outbox", relay_name="check-relay", registry=producer.factory.registry
        )
        self.relay = OutboxRelay(self.outbox, producer, RelayConfig(poll_interval_s=0.01))
        self._writers: list[Any] = []
        self._reader: Any = None
        self._relay_task: asyncio.Task[None] | None = None

    async def _connect(self) -> Any:
        import aiosqlite

        conn = await aiosqlite.connect(self.path)
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    async def setup(self, ids: Sequence[str], writers: int) -> None:
        conn = await self._connect()
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        await conn.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in ids])
        await conn.commit()
        await conn.close()
        at = now_ms()
        for ident in ids:
            self.ledger.committed(ident, 0, at)
        await self.outbox.open()
        await self.outbox.create_schema()
        self._writers = [await self._connect() for _ in range(writers)]
        self._reader = await self._connect()
        self._relay_task = asyncio.create_task(self.relay.run())

    async def read(self, ident: str) -> int:
        cursor = await self._reader.execute("SELECT version FROM items WHERE id = ?", (ident,))
        row = await cursor.fetchone()
        return int(row[0])

    async def change(self, writer: int, ids: Sequence[str], ref: Ref) -> None:
        conn = self._writers[writer]
        events = self._events(ref)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            marks = ",".join("?" * len(ids))
            cursor = await conn.execute(
                f"UPDATE items SET version = version + 1 WHERE id IN ({marks}) "
                "RETURNING id, version",
                tuple(ids),
            )
            changed = await cursor.fetchall()
            await self.outbox.add_events(conn, events)
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()
        at = now_ms()
        for ident, version in changed:
            self.ledger.committed(str(ident), int(version), at)
        for event in events:
            self.ledger.published(event.event_id, event.created_at_ms)
        self.ledger.writes += 1

    async def versions(self) -> dict[str, int]:
        cursor = await self._reader.execute("SELECT id, version FROM items")
        return {str(i): int(v) for i, v in await cursor.fetchall()}

    async def backlog(self) -> int:
        return await self.outbox.backlog()

    async def close(self) -> None:
        await self.relay.stop()
        if self._relay_task is not None:
            await asyncio.wait({self._relay_task})
        await self.outbox.close()
        for conn in [*self._writers, self._reader]:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
