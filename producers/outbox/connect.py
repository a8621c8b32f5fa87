"""Pick the outbox backend from a database URL (the relay command and the checker use it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from cachebus.contracts.errors import ConfigError
from cachebus.producers.outbox.base import OutboxStore
from cachebus.producers.outbox.postgres import PostgresOutbox
from cachebus.producers.outbox.sqlite import SQLiteOutbox

__all__ = ["open_store", "redact_database_url"]


def open_store(url: str, **options: Any) -> OutboxStore:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://...``.

    ``options`` go to :class:`SQLiteOutbox` or :class:`PostgresOutbox` (table, stream, ...).
    The store is not connected yet: ``async with store:`` or ``await store.open()``.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path == "/":
            raise ConfigError(
                f"SQLite outbox URL {url!r} names no file: use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        options.pop("connect_timeout_s", None)
        return SQLiteOutbox(path[1:], **options)
    if scheme in {"postgresql", "postgres"}:
        for name in ("relay_name", "claim_ttl_s", "busy_timeout_s"):
            options.pop(name, None)
        return PostgresOutbox(url, **options)
    raise ConfigError(
        f"outbox database URL {redact_database_url(url)!r}: the scheme must be sqlite:// or "
        "postgresql://"
    )


def redact_database_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
