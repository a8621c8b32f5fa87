"""The transactional outbox: invalidations committed with the data they invalidate.

A service writes its invalidation into an outbox table in the same database transaction as
its data change (:meth:`OutboxStore.add` with its own connection); an :class:`OutboxRelay`
moves the rows to the stream through a :class:`cachebus.producers.Producer`, keeping each row's
``event_id``, and marks them sent. A commit whose publish failed can no longer leave a stale
cache: the row waits in the table until a relay publishes it.

SQLite (:class:`SQLiteOutbox`, aiosqlite) is the embedded default; PostgreSQL
(:class:`PostgresOutbox`, asyncpg) the production one. Both need ``cachebus[outbox]``.
"""

from cachebus.producers.outbox.base import DEFAULT_TABLE, Claim, OutboxRow, OutboxStore
from cachebus.producers.outbox.connect import open_store, redact_database_url
from cachebus.producers.outbox.postgres import PostgresOutbox
from cachebus.producers.outbox.relay import OutboxRelay, Publisher, RelayConfig, RelayStats
from cachebus.producers.outbox.sqlite import SQLiteOutbox

__all__ = [
    # stores
    "OutboxStore",
    "PostgresOutbox",
    "SQLiteOutbox",
    "open_store",
    # relay
    "OutboxRelay",
    "Publisher",
    "RelayConfig",
    "RelayStats",
    # values
    "DEFAULT_TABLE",
    "Claim",
    "OutboxRow",
    "redact_database_url",
]
