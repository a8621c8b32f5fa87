"""The cache core: pooled Redis clients, value codec, cache API, SCAN+UNLINK invalidation.

* :class:`Cache` (asyncio) and :class:`SyncCache` share every line of logic through
  sans-I/O steps; :class:`LocalCache` is the in-process L1 with the same invalidation surface.
* Values are stored with a header naming their codec and namespace generation
  (:class:`ValueCodec`); ``flush_namespace`` is one INCR of the generation.
* :meth:`Cache.health` judges the audit's metrics; the :class:`CircuitBreaker` turns an
  outage into misses and skipped writes, never into a skipped invalidation.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.core.cache import Cache as Cache
    from cachebus.core.codec import Compression as Compression
    from cachebus.core.codec import ValueCodec as ValueCodec
    from cachebus.core.config import BreakerConfig as BreakerConfig
    from cachebus.core.config import CacheConfig as CacheConfig
    from cachebus.core.connection import RedisSettings as RedisSettings
    from cachebus.core.connection import async_client as async_client
    from cachebus.core.connection import close_shared_pools as close_shared_pools
    from cachebus.core.connection import sync_client as sync_client
    from cachebus.core.health import HealthReport as HealthReport
    from cachebus.core.health import HealthThresholds as HealthThresholds
    from cachebus.core.local import LocalCache as LocalCache
    from cachebus.core.sync import SyncCache as SyncCache

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
    # connections
    "async_client",
    "close_shared_pools",
    "sync_client",
    # values and reports
    "Compression",
    "HealthReport",
    "ValueCodec",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.core.cache": ("Cache",),
            "cachebus.core.codec": (
                "Compression",
                "ValueCodec",
            ),
            "cachebus.core.config": (
                "BreakerConfig",
                "CacheConfig",
            ),
            "cachebus.core.connection": (
                "RedisSettings",
                "async_client",
                "close_shared_pools",
                "sync_client",
            ),
            "cachebus.core.health": (
                "HealthReport",
                "HealthThresholds",
            ),
            "cachebus.core.local": ("LocalCache",),
            "cachebus.core.sync": ("SyncCache",),
        },
    )
