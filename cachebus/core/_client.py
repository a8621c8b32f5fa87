"""Checks and names for the Redis clients the facades are given."""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.cluster

from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.keys import KeySpace

__all__ = ["check_client", "check_colocated", "connection_kwargs", "describe", "is_cluster"]


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (asyncio or sync)."""
    return isinstance(client, redis.asyncio.RedisCluster | redis.cluster.RedisCluster)


def connection_kwargs(client: Any) -> dict[str, Any]:
    """The keyword arguments its connections are made with (pool or cluster nodes)."""
    pool: Any = getattr(client, "connection_pool", None)
    if pool is None:
        pool = getattr(client, "nodes_manager", None)
    return dict(getattr(pool, "connection_kwargs", None) or {})


def check_client(client: Any, expected: type | tuple[type, ...], facade: str, other: str) -> None:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if not isinstance(client, kinds):
        names = " or ".join(f"{t.__module__}.{t.__qualname__}" for t in kinds)
        raise ConfigError(
            f"{facade} needs a {names}, got "
            f"{type(client).__module__}.{type(client).__qualname__}; use {other} for the other "
            f"kind, or {facade}.from_url(url, keyspace)"
        )
    if connection_kwargs(client).get("decode_responses"):
        raise ConfigError(
            f"{facade} needs a client with decode_responses=False: cached values are binary "
            "(a header, then JSON or zstd); give it its own client or use from_url()"
        )


def describe(client: Any) -> str:
    """``host:port`` (or the socket path) for messages; never a URL with a password."""
    if is_cluster(client):
        startup = getattr(client.nodes_manager, "startup_nodes", None) or {}
        first = next(iter(startup), "?")
        return f"cluster {first}"
    kwargs = connection_kwargs(client)
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def check_colocated(keyspace: KeySpace, namespace: str, ident: str) -> None:
    """On a cluster, ``get_or_set`` needs the lease in its value's slot; say so if it cannot."""
    if not keyspace.lease_colocated(namespace, ident):
        raise ContractError(
            f"id {ident!r} has a '{{' or '}}' that is no Redis Cluster hash tag, so its "
            "get_or_set lease cannot share its value's slot; on a cluster use ids without "
            "braces, or with one complete {tag}",
            rule="id.cluster_slot",
        )
