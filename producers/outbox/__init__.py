"""The transactional outbox: invalidations committed with the data they invalidate.

A service writes its invalidation into an outbox table in the same database transaction as
its data change (:meth:`OutboxStore.add` with its own connection); an :class:`OutboxRelay`
moves the rows to the stream through a :class:`cachebus.producers.Producer`, keeping each row's
``event_id``, and marks them sent. A commit whose publish failed can no longer leave a stale
cache: the row waits in the table until a relay publishes it.

SQLite (:class:`SQLiteOutbox`, aiosqlite) is the embedded default; PostgreSQL
(:class:`PostgresOutbox`, asyncpg) the production one, with ``cachebus[outbox]``.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.producers.outbox.base import OutboxStore as OutboxStore
    from cachebus.producers.outbox.connect import open_store as open_store
    from cachebus.producers.outbox.postgres import PostgresOutbox as PostgresOutbox
    from cachebus.producers.outbox.relay import OutboxRelay as OutboxRelay
    from cachebus.producers.outbox.relay import RelayConfig as RelayConfig
    from cachebus.producers.outbox.sqlite import SQLiteOutbox as SQLiteOutbox

__all__ = [
    # stores
    "OutboxStore",
    "PostgresOutbox",
    "SQLiteOutbox",
    "open_store",
    # relay
    "OutboxRelay",
    "RelayConfig",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.producers.outbox.base": ("OutboxStore",),
            "cachebus.producers.outbox.connect": ("open_store",),
            "cachebus.producers.outbox.postgres": ("PostgresOutbox",),
            "cachebus.producers.outbox.relay": (
                "OutboxRelay",
                "RelayConfig",
            ),
            "cachebus.producers.outbox.sqlite": ("SQLiteOutbox",),
        },
    )
