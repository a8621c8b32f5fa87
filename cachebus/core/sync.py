"""The sync cache: the same operations as :class:`~cachebus.core.Cache`, driven by ``run_sync``.

Every decision lives in the shared steps (``_core``, ``invalidation``, ``fill``, ``_probe``);
this module is only the blocking I/O edge, so the two facades cannot drift apart. Safe to
share between threads (the pool, the codec, the breaker and the single-flight are; the
stats counters are unlocked, so under heavy thread contention they may undercount).

Failure policy (see :class:`~cachebus.core._core.Kind`): when Redis is unavailable or the circuit
breaker is open, reads are misses and writes are skipped (both counted), so an outage slows a
service instead of breaking it; invalidations (``delete``, ``invalidate_*``, flushes) are never
skipped: they raise :class:`BackendUnavailable` / :class:`CircuitOpenError` and the caller
retries (the consumer leaves the entry pending).

Ownership: ``SyncCache(client, ...)`` borrows the client and never closes it;
``SyncCache.from_url(...)`` creates its own pool and closes it in :meth:`close`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import redis
import redis.cluster

from cachebus.contracts.errors import BackendError, BackendUnavailable
from cachebus.contracts.keys import KeyRef, KeySpace
from cachebus.core._client import check_client, describe, is_cluster
from cachebus.core._core import CacheCore, Kind
from cachebus.core._io import Step, SyncClient, run_sync
from cachebus.core._probe import health_step, pool_usage
from cachebus.core.breaker import CircuitBreaker
from cachebus.core.cluster_health import cluster_health_step
from cachebus.core.cluster_scan import cluster_pattern_step
from cachebus.core.codec import Decoded
from cachebus.core.config import CacheConfig
from cachebus.core.connection import RedisSettings, create_sync_cluster, create_sync_pool
from cachebus.core.health import HealthReport
from cachebus.core.invalidation import (
    PatternResult,
    flush_step,
    pattern_step,
    unlink_ids_step,
    unlink_refs_step,
)
from cachebus.core.singleflight import SyncSingleFlight
from cachebus.core.stats import CacheStats
from cachebus.core.sync_reads import SyncReads

__all__ = ["SyncCache"]

T = TypeVar("T")


class SyncCache(SyncReads):
    """A namespaced Redis cache for one :class:`KeySpace` scope (blocking); reads in
    :class:`~cachebus.core.sync_reads.SyncReads`."""

    def __init__(
        self,
        client: SyncClient,
        keyspace: KeySpace,
        config: CacheConfig | None = None,
    ) -> None:
        check_client(client, (redis.Redis, redis.cluster.RedisCluster), "SyncCache", "Cache")
        self._client = client
        self._cluster = is_cluster(client)
        self._owned_pool: redis.BlockingConnectionPool | None = None
        self._owned_client = False
        self._core = CacheCore(keyspace, config or CacheConfig(), describe(client))
        self._core.cluster = self._cluster
        self._flight = SyncSingleFlight()

    @classmethod
    def from_url(
        cls,
        url: str,
        keyspace: KeySpace,
        config: CacheConfig | None = None,
        **redis_settings: Any,
    ) -> SyncCache:
        """A cache on its own pool (``RedisSettings.from_url(url, **redis_settings)``);
        with ``cluster=True``, on its own Redis Cluster client."""
        settings = RedisSettings.from_url(url, **redis_settings)
        if settings.cluster:
            cluster_cache = cls(create_sync_cluster(settings), keyspace, config)
            cluster_cache._core.where = f"cluster {settings.redacted_url}"
            cluster_cache._owned_client = True
            return cluster_cache
        pool = create_sync_pool(settings)
        cache = cls(redis.Redis(connection_pool=pool), keyspace, config)
        cache._core.where = settings.redacted_url
        cache._owned_pool = pool
        return cache

    def close(self) -> None:
        """Close the pool if this cache created it (``from_url``); a borrowed client stays open."""
        if self._owned_client:
            self._owned_client = False
            self._client.close()
        if self._owned_pool is not None:
            pool, self._owned_pool = self._owned_pool, None
            self._client.close()
            pool.disconnect()

    def __enter__(self) -> SyncCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def keyspace(self) -> KeySpace:
        return self._core.keyspace

    @property
    def config(self) -> CacheConfig:
        return self._core.config

    @property
    def stats(self) -> CacheStats:
        return self._core.stats

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._core.breaker

    @property
    def client(self) -> SyncClient:
        return self._client

    # ---- the I/O edge -----------------------------------------------------------------
    def _run(self, step: Step[T], kind: Kind, fallback: T | None = None) -> T:
        """Run ``step`` under the failure policy; reads and writes pass their ``fallback``."""
        core = self._core
        if not core.admit(kind):
            step.close()
            assert fallback is not None, "only reads and writes degrade"
            return fallback
        try:
            result = run_sync(step, self._client, core.where, core.observe)
        except BackendUnavailable as exc:
            core.failed(kind, exc)
            assert fallback is not None, "only reads and writes degrade"
            return fallback
        except BackendError:
            core.succeeded()  # Redis answered, with an error
            raise
        except BaseException:
            core.abandoned()
            raise
        core.succeeded()
        return result

    # ---- reads and writes -------------------------------------------------------------
    def set(
        self, namespace: str, ident: str | int, value: Any, *, ttl: float | None = None
    ) -> bool:
        """Store ``value`` for the namespace TTL (or ``ttl`` seconds). False if skipped.

        Bytes are stored as they are, anything else as JSON. An oversize or unserializable
        value raises :class:`CodecError` before anything is sent.
        """
        step = self._core.write_step(namespace, [(str(ident), value)], ttl)
        return self._run(step, Kind.WRITE, 0) == 1

    def set_many(
        self,
        namespace: str,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> int:
        """Store several values in one round trip; returns how many were written."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        step = self._core.write_step(namespace, [(str(i), v) for i, v in pairs], ttl)
        return self._run(step, Kind.WRITE, 0)

    def delete(self, namespace: str, ident: str | int) -> bool:
        """Remove one value (an invalidation: raises when Redis is unavailable)."""
        return self.invalidate_refs([KeyRef(namespace, str(ident))]) == 1

    # ---- invalidation -----------------------------------------------------------------
    def invalidate_keys(self, namespace: str, ids: Iterable[str | int]) -> int:
        """UNLINK these ids' values (and leases): one round trip per ``unlink_batch`` ids."""
        return self.invalidate_refs(KeyRef(namespace, str(i)) for i in ids)

    def invalidate_refs(self, refs: Iterable[KeyRef]) -> int:
        """Like :meth:`invalidate_keys` across namespaces: a consumer batch in one round trip."""
        refs = list(refs)
        if not refs:
            return 0
        return self._run(unlink_refs_step(self._core, refs), Kind.INVALIDATE)

    def invalidate_ids(self, ids: Mapping[str, Iterable[str]]) -> int:
        """Like :meth:`invalidate_refs` for ``{namespace: ids}``: keys are built in bulk."""
        if not any(ids.values()):
            return 0
        return self._run(unlink_ids_step(self._core, ids), Kind.INVALIDATE)

    def invalidate_pattern(
        self, namespace: str, pattern: str, *, max_keys: int | None = None
    ) -> PatternResult:
        """SCAN MATCH + batched UNLINK of a namespace-relative glob (never a bare ``*``).

        Past ``max_keys`` matches (default ``config.pattern_max_keys``) it flushes the
        namespace instead and says so (``escalated``).
        """
        if self._cluster:
            step = cluster_pattern_step(self._core, namespace, pattern, max_keys)
        else:
            step = pattern_step(self._core, namespace, pattern, max_keys)
        return self._run(step, Kind.INVALIDATE)

    def flush_namespace(self, namespace: str) -> int:
        """Make every value of the namespace invisible at once (O(1)); the new generation."""
        (generation,) = self._run(flush_step(self._core, [namespace]), Kind.INVALIDATE)
        return generation

    def flush_scope(self) -> None:
        """Flush every registered namespace of this scope, in one round trip."""
        names = self._core.keyspace.registry.names
        self._run(flush_step(self._core, names), Kind.INVALIDATE)

    # ---- introspection ----------------------------------------------------------------
    def health(self) -> HealthReport:
        """The audit's metrics with verdicts (raises when Redis is unavailable)."""
        if isinstance(self._client, redis.cluster.RedisCluster):
            return self._run(cluster_health_step(self._core), Kind.ADMIN)
        in_use, cap = pool_usage(self._client.connection_pool)
        return self._run(health_step(self._core, in_use, cap), Kind.ADMIN)

    def decode(self, data: bytes) -> Decoded:
        """Decode a stored value; raises :class:`CodecError` saying what is wrong with it."""
        return self._core.codec.decode(data)
