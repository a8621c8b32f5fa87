"""Checks and names for the Redis clients the facades are given."""

from __future__ import annotations

from typing import Any

from contracts.errors import ConfigError

__all__ = ["check_client", "describe"]


def check_client(client: Any, expected: type, facade: str, other: str) -> None:
    if not isinstance(client, expected):
        raise ConfigError(
            f"{facade} needs a {expected.__module__}.{expected.__qualname__}, got "
            f"{type(client).__module__}.{type(client).__qualname__}; use {other} for the other "
            f"kind, or {facade}.from_url(url, keyspace)"
        )
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ConfigError(
            f"{facade} needs a client with decode_responses=False: cached values are binary "
            "(a header, then JSON or zstd); give it its own client or use from_url()"
        )


def describe(client: Any) -> str:
    """``host:port`` (or the socket path) for messages; never a URL with a password."""
    kwargs = getattr(client.connection_pool, "connection_kwargs", {})
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
