"""Connections to Redis: settings, pools, and the one place redis-py errors are translated.

Every cachebus client talks to Redis with explicit, bounded settings:

* connect and socket timeouts are set (redis-py's default socket timeout is none);
* retries are explicit and bounded (redis-py 8 retries by default, which can stretch a 2 s
  timeout to 26 s and re-send a write);
* the pool caps connections and *waits* (bounded by ``pool_timeout``) for a free one instead of
  failing when a burst exceeds the cap;
* idle connections are health-checked before reuse.

Ownership is explicit, as in redis-py: whoever creates a pool closes it. :func:`async_client`
and :func:`sync_client` hand out clients on the process-wide pool for a given settings value
(one pool per URL and settings per process, per event loop for asyncio); closing such a client
leaves the shared pool open, and :func:`close_shared_pools` closes them all at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as SyncRetry

from cachebus.contracts.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    ConfigError,
    GroupMissingError,
    NotPrimary,
)
from cachebus.core._fastpack import connection_class_for

__all__ = [
    "RedisSettings",
    "async_client",
    "close_shared_pools",
    "create_async_cluster",
    "create_async_pool",
    "create_sync_cluster",
    "create_sync_pool",
    "drop_connections",
    "is_loss_reply",
    "map_redis_errors",
    "redact_url",
    "sync_client",
]

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the only form of a URL we ever print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach one Redis. Build it with :meth:`from_url`; ``repr`` never shows a password.

    The worst case for one command is :attr:`max_command_seconds`: every attempt may wait for a
    pool slot, a connect and a reply, and attempts are separated by capped backoff.
    """

    url: str = field(repr=False)
    socket_timeout: float = 2.0
    socket_connect_timeout: float = 1.0
    #: Extra attempts after the first, on connection errors and timeouts only; never for a
    #: command whose second run changes what the first did (see :mod:`cachebus.core.once`).
    retries: int = 1
    retry_backoff_base: float = 0.05
    retry_backoff_cap: float = 0.5
    #: PING an idle connection before reuse when it sat unused this long (seconds).
    health_check_interval: float = 15.0
    max_connections: int = 50
    #: How long a caller waits for a free connection when all ``max_connections`` are busy.
    pool_timeout: float = 2.0
    client_name: str | None = None
    #: The URL names one node of a Redis Cluster: clients discover the others from it.
    cluster: bool = False

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisSettings:
        if not isinstance(url, str) or not url:
            raise ConfigError("a Redis URL is required, such as redis://localhost:6379/0")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ConfigError(f"Redis URL {redact_url(url)!r} is malformed: {exc}") from None
        if parts.scheme not in _SCHEMES:
            raise ConfigError(
                f"Redis URL {redact_url(url)!r} has scheme {parts.scheme!r}; "
                "use redis://host:port/db, rediss:// for TLS, or unix:///path.sock"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ConfigError(f"Redis URL {redact_url(url)!r} names no host")
        db = parts.path.lstrip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise ConfigError(f"Redis URL {redact_url(url)!r}: database {db!r} is not a number")
        settings = cls(url=url, **overrides)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.socket_timeout <= 0 or self.socket_connect_timeout <= 0:
            raise ConfigError("socket_timeout and socket_connect_timeout must be positive")
        if not 0 <= self.retries <= 10:
            raise ConfigError("retries must be between 0 and 10")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.pool_timeout < 0:
            raise ConfigError("pool_timeout must not be negative")
        if self.cluster and urlsplit(self.url).scheme == "unix":
            raise ConfigError("a Redis Cluster is reached over TCP: use redis:// or rediss://")
        if self.cluster and urlsplit(self.url).path.lstrip("/") not in ("", "0"):
            raise ConfigError("a Redis Cluster has only database 0: drop the /db of the URL")

    def with_options(self, **changes: Any) -> RedisSettings:
        settings = replace(self, **changes)
        settings._check()
        return settings

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for logs and span attributes."""
        parts = urlsplit(self.url)
        return (parts.hostname or parts.path or "localhost", parts.port or 6379)

    @property
    def max_command_seconds(self) -> float:
        """Upper bound on how long one command can take before it raises."""
        attempts = self.retries + 1
        per_attempt = self.pool_timeout + self.socket_connect_timeout + self.socket_timeout
        backoff = sum(
            min(self.retry_backoff_cap, self.retry_backoff_base * (2.0**i))
            for i in range(self.retries)
        )
        return attempts * per_attempt + backoff

    def _pool_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": self.health_check_interval,
            "max_connections": self.max_connections,
            "timeout": self.pool_timeout,
            "retry_on_timeout": self.retries > 0,
        }
        if self.client_name:
            kwargs["client_name"] = self.client_name
        return kwargs

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={self.redacted_url!r}, socket_timeout={self.socket_timeout}, "
            f"retries={self.retries}, max_connections={self.max_connections})"
        )


def _backoff(settings: RedisSettings) -> ExponentialBackoff:
    return ExponentialBackoff(cap=settings.retry_backoff_cap, base=settings.retry_backoff_base)


def create_async_pool(settings: RedisSettings) -> redis.asyncio.BlockingConnectionPool:
    """A new asyncio pool; the caller owns it and must ``await pool.aclose()``."""
    retry = AsyncRetry(_backoff(settings), settings.retries)
    try:
        return redis.asyncio.BlockingConnectionPool.from_url(
            settings.url,
            retry=retry,
            connection_class=connection_class_for(urlsplit(settings.url).scheme),
            **settings._pool_kwargs(),
        )
    except ValueError as exc:
        raise ConfigError(f"Redis URL {settings.redacted_url!r} is not usable: {exc}") from None


def create_sync_pool(settings: RedisSettings) -> redis.BlockingConnectionPool:
    """A new sync pool; the caller owns it and must ``pool.disconnect()``."""
    retry = SyncRetry(_backoff(settings), settings.retries)
    try:
        return redis.BlockingConnectionPool.from_url(
            settings.url, retry=retry, **settings._pool_kwargs()
        )
    except ValueError as exc:
        raise ConfigError(f"Redis URL {settings.redacted_url!r} is not usable: {exc}") from None


def _cluster_kwargs(settings: RedisSettings) -> dict[str, Any]:
    kwargs = settings._pool_kwargs()
    # Cluster clients keep one pool per node and fail fast past the cap instead of waiting.
    del kwargs["timeout"]
    del kwargs["retry_on_timeout"]  # the retry object covers timeouts in cluster clients
    return kwargs


def create_async_cluster(settings: RedisSettings) -> redis.asyncio.RedisCluster:
    """A new asyncio Redis Cluster client (one pool per node); the caller must ``aclose()`` it.

    ``settings.url`` names any node; the others are discovered from it. The same bounded
    timeouts and retries apply; ``max_connections`` is per node.
    """
    retry = AsyncRetry(_backoff(settings), settings.retries)
    try:
        client = redis.asyncio.RedisCluster.from_url(
            settings.url, retry=retry, **_cluster_kwargs(settings)
        )
    except (ValueError, redis.exceptions.RedisClusterException) as exc:
        raise ConfigError(f"Redis URL {settings.redacted_url!r} is not usable: {exc}") from None
    # hiredis command packing, as in our pools: every node found from now on connects with it.
    fast: Any = connection_class_for(urlsplit(settings.url).scheme)
    client.nodes_manager.connection_kwargs["connection_class"] = fast
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = fast
    return client


def create_sync_cluster(settings: RedisSettings) -> redis.cluster.RedisCluster:
    """A new sync Redis Cluster client; the caller must ``close()`` it."""
    retry = SyncRetry(_backoff(settings), settings.retries)
    try:
        return redis.cluster.RedisCluster.from_url(
            settings.url, retry=retry, **_cluster_kwargs(settings)
        )
    except (ValueError, redis.exceptions.RedisClusterException) as exc:
        raise ConfigError(f"Redis URL {settings.redacted_url!r} is not usable: {exc}") from None


_lock = threading.Lock()
# Keyed by the loop object itself (weakly): an id() of a closed loop can be reused by a new
# loop, which would then be handed a pool whose connections belong to the dead one.
_async_pools: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[RedisSettings, redis.asyncio.BlockingConnectionPool]
] = weakref.WeakKeyDictionary()
_sync_pools: dict[RedisSettings, redis.BlockingConnectionPool] = {}


def async_client(settings: RedisSettings) -> redis.asyncio.Redis:
    """A client on this process's shared pool for ``settings`` (asyncio pools are per loop).

    The client borrows the pool: ``await client.aclose()`` releases the client, not the pool.
    """
    loop = asyncio.get_running_loop()
    with _lock:
        pools = _async_pools.setdefault(loop, {})
        pool = pools.get(settings)
        if pool is None:
            pool = pools[settings] = create_async_pool(settings)
    return redis.asyncio.Redis(connection_pool=pool)


def sync_client(settings: RedisSettings) -> redis.Redis:
    """A sync client on this process's shared pool for ``settings``."""
    with _lock:
        pool = _sync_pools.get(settings)
        if pool is None:
            pool = _sync_pools[settings] = create_sync_pool(settings)
    return redis.Redis(connection_pool=pool)


async def close_shared_pools() -> None:
    """Close every shared pool of the running loop, and every sync shared pool."""
    loop = asyncio.get_running_loop()
    with _lock:
        pools = list(_async_pools.pop(loop, {}).values())
        sync_pools = list(_sync_pools.values())
        _sync_pools.clear()
    for pool in pools:
        await pool.aclose()
    for sync_pool in sync_pools:
        sync_pool.disconnect()


@contextlib.contextmanager
def map_redis_errors(operation: str, where: str = "Redis") -> Iterator[None]:
    """Translate redis-py errors into the cachebus tree. The only such boundary in cachebus.

    ``operation`` says what we were doing (``"XADD cb:stream:inval"``), ``where`` which server
    (never a URL with a password: use :attr:`RedisSettings.redacted_url` or ``host:port``).
    """
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        # A subclass of redis's ConnectionError, but retrying will not fix a wrong password.
        raise AccessDenied(
            f"{operation}: authentication to {where} failed ({exc}); check the username and "
            "password of the Redis URL"
        ) from exc
    except redis.exceptions.NoPermissionError as exc:
        raise AccessDenied(
            f"{operation}: {where} refused the command (NOPERM {exc}); the ACL user lacks this "
            "right, "
            "see infra/redis/users.acl"
        ) from exc
    except redis.exceptions.OutOfMemoryError as exc:
        raise BackendError(
            f"{operation}: {where} is out of memory ({exc}); raise maxmemory or free memory"
        ) from exc
    except redis.exceptions.ReadOnlyError as exc:
        raise NotPrimary(
            f"{operation}: {where} is a read-only replica now ({exc}); a failover? "
            "reconnecting to find the primary"
        ) from exc
    except redis.exceptions.BusyLoadingError as exc:
        # A subclass of redis's ConnectionError: the server is up, reading its AOF or RDB.
        raise BackendUnavailable(
            f"{operation}: {where} is loading its dataset ({exc}); retrying once it has loaded"
        ) from exc
    except (
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        redis.exceptions.SlotNotCoveredError,
    ) as exc:
        # A Redis Cluster between topologies (failover, resharding): retry shortly.
        raise BackendUnavailable(
            f"{operation}: the cluster at {where} cannot serve it right now ({exc}); "
            "a failover or resharding is probably in progress"
        ) from exc
    except redis.exceptions.RedisClusterException as exc:
        # Not a RedisError: raised by the cluster client itself (keys in different slots,
        # no node for a command).
        raise BackendError(f"{operation}: cluster client refused it ({exc})") from exc
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        if is_loss_reply(text):
            raise GroupMissingError(f"{operation}: {text}") from exc
        code = text.split(" ", 1)[0]
        if code in _LATER:
            raise BackendUnavailable(
                f"{operation}: {where} cannot serve it right now ({text}); retrying"
            ) from exc
        raise BackendError(f"{operation}: {where} answered an error: {text}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        kind = "timed out" if isinstance(exc, redis.exceptions.TimeoutError) else "failed"
        raise BackendUnavailable(
            f"{operation}: connection to {where} {kind} ({exc}); is Redis up and reachable?"
        ) from exc
    except redis.exceptions.RedisError as exc:
        raise BackendError(f"{operation}: {where}: {exc}") from exc


#: Error codes that mean "the same request will work later": a script or function is running
#: too long (BUSY), a blocked read was unblocked by CLIENT UNBLOCK ... ERROR (UNBLOCKED, when
#: :func:`is_loss_reply` says it is not a loss), a replica lost its primary (MASTERDOWN).
_LATER = frozenset({"BUSY", "UNBLOCKED", "MASTERDOWN"})


def is_loss_reply(text: str) -> bool:
    """Whether an error reply says the stream or its consumer group is gone.

    ``NOGROUP`` (the group or the stream does not exist, or, on Redis 7.0, the group was
    destroyed under a blocked read) and ``UNBLOCKED the stream key no longer exists`` (the
    stream was deleted under a blocked XREADGROUP). ``UNBLOCKED client unblocked via CLIENT
    UNBLOCK`` is no loss: that read is simply tried again.
    """
    if text.startswith("NOGROUP"):
        return True
    return text.startswith("UNBLOCKED") and "no longer exists" in text


async def drop_connections(client: Any) -> None:
    """Close the idle connections of ``client``'s pool, so the next command connects anew
    (after READONLY: a name that now resolves to the new primary is looked up again)."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, redis.asyncio.ConnectionPool):
        await pool.disconnect(inuse_connections=False)
