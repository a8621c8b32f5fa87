"""What every outbox backend shares: the table's shape, rows, claims, and the writer API.

A service writes its invalidation into the outbox table **in the same database transaction**
as its data change, through its own connection: the two commit together or not at all. A
relay (:class:`~cachebus.producers.outbox.relay.OutboxRelay`) later claims unsent rows, publishes
their events through a :class:`~cachebus.producers.Producer` with the event ids chosen at write
time, and marks them sent. A relay that dies between publishing and marking leaves the rows unsent;
the next relay publishes them again with the same ``event_id`` (a harmless duplicate).

The table (one per database, shared by the streams it feeds)::

    id             monotonic row id (publish order)
    event_id       the event's id (unique): a retry never makes a new one
    stream         the logical stream it goes to
    payload        the event as JSON
    created_at_ms  when the service wrote it
    attempts       publish attempts so far
    claimed_by, claimed_until_ms   SQLite only: a relay's claim (PostgreSQL locks rows)
    sent_at_ms, entry_id           set once Redis accepted the event
    failed_at_ms, last_error       a row that can never be published (its event is invalid)
"""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.events import EVENT_ADAPTER, Event, contract_error
from cachebus.contracts.factory import EventFactory, Ref
from cachebus.contracts.keys import validate_name
from cachebus.contracts.registry import Registry

__all__ = ["DEFAULT_TABLE", "Claim", "OutboxRow", "OutboxStore", "now_ms", "table_name"]

DEFAULT_TABLE = "cachebus_outbox"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def table_name(name: str) -> str:
    """A table name (optionally ``schema.table``), checked so it can be put in SQL as is."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(part) for part in parts):
        raise ConfigError(
            f"outbox table {name!r} is not a plain SQL identifier: use letters, digits and "
            "'_' (optionally 'schema.table'), at most 63 characters each"
        )
    return name


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An unsent row as a relay claimed it."""

    row_id: int
    event_id: str
    payload: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows a relay holds until it marks them sent or releases them (``handle``: backend's)."""

    rows: tuple[OutboxRow, ...]
    handle: Any = None


class OutboxStore(ABC):
    """An outbox table: the writer side (the service's connection) and the relay side."""

    def __init__(
        self,
        *,
        table: str = DEFAULT_TABLE,
        stream: str = "inval",
        producer_name: str = "outbox",
        registry: Registry | None = None,
    ) -> None:
        self.table = table_name(table)
        self.stream = validate_name(stream, "stream")
        #: The system's registry: the writer side needs it (rows are checked against it); the
        #: relay side without it checks rows' syntax only (its producer checks namespaces).
        self.registry = registry
        self._factory = EventFactory(producer_name, registry) if registry is not None else None

    @property
    def factory(self) -> EventFactory:
        """The writer's event factory (the registry is required to write)."""
        if self._factory is None:
            raise ConfigError(
                "this outbox has no registry: pass registry=Registry.from_file(...) to write"
            )
        return self._factory

    # ---- the writer side: inside the service's own transaction ---------------------------
    async def add(self, conn: Any, *refs: Ref, reason: str = "") -> list[str]:
        """Write invalidations of ``refs`` (KeyRef, PatternRef or events) with ``conn``.

        ``conn`` is the service's connection, inside the transaction that changes its data
        (refused otherwise: outside one, the row would commit on its own). Returns the event
        ids; nothing reaches Redis until the transaction commits and a relay runs.
        """
        return await self.add_events(conn, self.factory.events_for(refs, reason=reason))

    async def add_events(self, conn: Any, events: Iterable[Event]) -> list[str]:
        """Write ready events (built by an :class:`EventFactory`) with ``conn``."""
        rows = [self._row(event) for event in events]
        if not rows:
            return []
        self._require_transaction(conn)
        await self._insert(conn, rows)
        return [row[0] for row in rows]

    def _row(self, event: Event) -> tuple[str, str, str, int]:
        if event.namespace not in self.factory.registry:
            raise ContractError(
                f"namespace {event.namespace!r} is not registered for this outbox",
                rule="namespace.unknown",
            )
        payload = orjson.dumps(event.model_dump(mode="json")).decode()
        return (event.event_id, self.stream, payload, now_ms())

    def decode(self, row: OutboxRow) -> Event:
        """The event of a claimed row; :class:`ContractError` if it is not a valid event."""
        try:
            data = orjson.loads(row.payload)
        except orjson.JSONDecodeError as exc:
            raise ContractError(
                f"outbox row {row.row_id} holds no JSON: {exc}", rule="outbox.payload"
            ) from None
        if not isinstance(data, dict) or data.get("event_id") != row.event_id:
            raise ContractError(
                f"outbox row {row.row_id} does not hold event {row.event_id}",
                rule="outbox.payload",
            )
        try:
            return EVENT_ADAPTER.validate_python(data, context={"registry": self.registry})
        except ValidationError as exc:
            raise contract_error(exc) from None

    @abstractmethod
    def _require_transaction(self, conn: Any) -> None: ...

    @abstractmethod
    async def _insert(self, conn: Any, rows: Sequence[tuple[str, str, str, int]]) -> None: ...

    # ---- administration ----------------------------------------------------------------
    @abstractmethod
    async def create_schema(self) -> None:
        """Create the table and its index if they do not exist (idempotent)."""

    @abstractmethod
    async def backlog(self) -> int:
        """Rows of this stream not sent yet (failed rows excluded)."""

    @abstractmethod
    async def failed(self) -> list[tuple[int, str, str]]:
        """Rows that can never be published: (row id, event id, error)."""

    @abstractmethod
    async def purge_sent(self, older_than_ms: int, limit: int = 10_000) -> int:
        """Delete up to ``limit`` rows sent before ``older_than_ms``; returns how many."""

    # ---- the relay side ------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect the relay side (the writer side uses the service's connections)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def wait_for_rows(self, seconds: float) -> None:
        """Wait up to ``seconds`` for new rows (backends that are told of them return early)."""
        await asyncio.sleep(seconds)

    @abstractmethod
    async def claim(self, limit: int) -> Claim | None:
        """Take up to ``limit`` unsent rows, oldest first, that no other relay holds."""

    @abstractmethod
    async def mark_sent(self, claim: Claim, sent: Sequence[tuple[int, str]]) -> None:
        """Rows ``(row id, entry id)`` are in the stream; ends the claim."""

    @abstractmethod
    async def release(self, claim: Claim, error: str) -> None:
        """Publishing failed: count an attempt, keep the rows unsent; ends the claim."""

    @abstractmethod
    async def mark_failed(self, claim: Claim, row_ids: Sequence[int], error: str) -> None:
        """These rows can never be published (invalid events): set them aside, loudly.
        The claim goes on for its other rows."""

    async def __aenter__(self) -> OutboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
