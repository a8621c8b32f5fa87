"""The audited system's data, in miniature: the source of truth every cache must agree with.

A SQLite file holds one row per cached item, ``(namespace, id) -> version``. Writers bump
versions; readers cache ``{"v": version}``. After quiescence a cached value is *stale* when
its version is below the row's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cachebus.contracts.keys import CacheKeys, KeyRef

__all__ = ["SERVICES", "World", "WorldShape"]

#: The consuming services and the namespaces each caches (its group's scope).
SERVICES: dict[str, frozenset[str]] = {
    "bot": frozenset({"positions", "prices"}),
    "indexer": frozenset({"market", "prices"}),
}


@dataclass(frozen=True, slots=True)
class WorldShape:
    users: int = 200
    markets: int = 100

    def user_positions(self, user: int) -> KeyRef:
        return CacheKeys.user_positions(f"u{user}")

    def market_views(self, market: int) -> tuple[KeyRef, KeyRef]:
        return CacheKeys.market_all(f"m{market}")

    def price(self, market: int) -> KeyRef:
        return CacheKeys.price(f"m{market}")

    def refs(self) -> Iterator[KeyRef]:
        for user in range(self.users):
            yield self.user_positions(user)
        for market in range(self.markets):
            yield from self.market_views(market)
            yield self.price(market)

    def refs_of(self, namespaces: frozenset[str]) -> list[KeyRef]:
        return [ref for ref in self.refs() if ref.namespace in namespaces]


class World:
    """The SQLite file. WAL mode: writers and readers in several processes at once."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS items (ns TEXT NOT NULL, id TEXT NOT NULL, "
        "version INTEGER NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID"
    )

    def __init__(self, path: Path, shape: WorldShape | None = None) -> None:
        self.path = path
        self.shape = shape or WorldShape()

    def create(self) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(self.SCHEMA)
            db.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, 0)",
                [(ref.namespace, ref.id) for ref in self.shape.refs()],
            )

    def versions(self) -> dict[tuple[str, str], int]:
        with sqlite3.connect(self.path, timeout=30) as db:
            return {
                (ns, ident): v for ns, ident, v in db.execute("SELECT ns, id, version FROM items")
            }
