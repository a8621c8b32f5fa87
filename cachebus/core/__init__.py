"""The cache core: pooled Redis clients, value codec, cache API, SCAN+UNLINK invalidation.

* :class:`Cache` (asyncio) and :class:`SyncCache` share every line of logic through
  sans-I/O steps; :class:`LocalCache` is the in-process L1 with the same invalidation surface.
* Values are stored with a header naming their codec and namespace generation
  (:class:`ValueCodec`); ``flush_namespace`` is one INCR of the generation.
* :meth:`Cache.health` judges the audit's metrics; the :class:`CircuitBreaker` turns an
  outage into misses and skipped writes, never into a skipped invalidation.
"""

from cachebus.core.breaker import BreakerState, CircuitBreaker
from cachebus.core.cache import Cache
from cachebus.core.codec import Compression, Decoded, ValueCodec
from cachebus.core.config import BreakerConfig, CacheConfig
from cachebus.core.connection import (
    RedisSettings,
    async_client,
    close_shared_pools,
    create_async_cluster,
    create_async_pool,
    create_sync_cluster,
    create_sync_pool,
    sync_client,
)
from cachebus.core.dictionary import Dictionary
from cachebus.core.health import HealthReport, HealthThresholds, KeyCount, Metric, Verdict
from cachebus.core.invalidation import PatternResult
from cachebus.core.local import LocalCache
from cachebus.core.stats import CacheStats
from cachebus.core.sync import SyncCache

__all__ = [
    # caches
    "Cache",
    "LocalCache",
    "SyncCache",
    # settings
    "BreakerConfig",
    "CacheConfig",
    "HealthThresholds",
    "RedisSettings",
    # results and reports
    "CacheStats",
    "Decoded",
    "HealthReport",
    "KeyCount",
    "Metric",
    "PatternResult",
    "Verdict",
    # codec
    "Compression",
    "Dictionary",
    "ValueCodec",
    # breaker
    "BreakerState",
    "CircuitBreaker",
    # connections
    "async_client",
    "close_shared_pools",
    "create_async_cluster",
    "create_async_pool",
    "create_sync_cluster",
    "create_sync_pool",
    "sync_client",
]
