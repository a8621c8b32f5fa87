"""The audited system's data, in miniature: the source of truth every cache must agree with.

A SQLite file holds one row per cached item, ``(namespace, id) -> version``. Writers bump
versions; readers cache ``{"v": version}``. After quiescence a cached value is *stale* when
its version is below the row's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cachebus.contracts.keys import KeyRef, PatternRef
from cachebus.contracts.registry import Registry
from cachebus.demo.registry import demo_registry

__all__ = ["PG_NAMESPACE", "World", "WorldShape"]

#: The namespace whose source of truth is PostgreSQL (when the demo has one), not SQLite.
PG_NAMESPACE = "risk_limits"


@dataclass(frozen=True, slots=True)
class WorldShape:
    """The items of the world, as references built from the registry's key templates."""

    users: int = 200
    markets: int = 100
    registry: Registry = field(default_factory=demo_registry, compare=False)
    #: Risk limits live in PostgreSQL (:mod:`cachebus.demo.postgres`); without it, nowhere.
    postgres: bool = False
    #: Markets with risk limits: few, so each is fixed (and read) often.
    limits: int = 20

    def user_positions(self, user: int) -> KeyRef:
        """The position list the API caches."""
        return self.registry["positions"].ref(user_id=f"u{user}", view="all")

    def user_positions_all(self, user: int) -> PatternRef:
        """Everything cached about one user's positions."""
        return self.registry["positions"].prefix(user_id=f"u{user}")

    def market_views(self, market: int) -> tuple[KeyRef, KeyRef]:
        """Both cached views of one market: invalidated together, without a SCAN."""
        ns = self.registry["market"]
        return ns.ref(market_id=f"m{market}", view="summary"), ns.ref(
            market_id=f"m{market}", view="detail"
        )

    def price(self, market: int) -> KeyRef:
        return self.registry["prices"].ref(market_id=f"m{market}")

    def risk_limit(self, market: int) -> KeyRef:
        """A row of PostgreSQL's ``public.risk_limits``, named by its mapping's key."""
        return self.registry[PG_NAMESPACE].ref(market_id=f"m{market}")

    def refs(self) -> Iterator[KeyRef]:
        for user in range(self.users):
            yield self.user_positions(user)
        for market in range(self.markets):
            yield from self.market_views(market)
            yield self.price(market)
        for market in range(self.limits if self.postgres else 0):
            yield self.risk_limit(market)

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
                [(r.namespace, r.id) for r in self.shape.refs() if r.namespace != PG_NAMESPACE],
            )

    def versions(self) -> dict[tuple[str, str], int]:
        with sqlite3.connect(self.path, timeout=30) as db:
            return {
                (ns, ident): v for ns, ident, v in db.execute("SELECT ns, id, version FROM items")
            }
