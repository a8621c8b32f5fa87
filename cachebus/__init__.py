"""cachebus: reliable cache invalidation across services over Redis Streams.

What a service needs is importable from here: ``from cachebus import Registry, Cache,
Producer, ConsumerService``. The layers stay importable for the rest: ``cachebus.contracts``
(the wire contract, the key registry, the error tree), ``cachebus.core`` (the cache core),
``cachebus.producers``, ``cachebus.consumers``; ``cachebus.testing`` is the real-Redis test
harness and ``cachebus.cli`` the command line. Names are imported on first use (see
:mod:`cachebus._lazy`), so ``import cachebus`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.consumers.broadcast import BroadcastConsumer as BroadcastConsumer
    from cachebus.consumers.cache_metrics import CacheHealthMetrics as CacheHealthMetrics
    from cachebus.consumers.config import BroadcastConfig as BroadcastConfig
    from cachebus.consumers.config import ConsumerConfig as ConsumerConfig
    from cachebus.consumers.metrics import ConsumerMetrics as ConsumerMetrics
    from cachebus.consumers.partitioned import PartitionedConsumer as PartitionedConsumer
    from cachebus.consumers.runtime import Consumer as Consumer
    from cachebus.consumers.sinks import CallbackSink as CallbackSink
    from cachebus.consumers.sinks import LocalCacheSink as LocalCacheSink
    from cachebus.consumers.sinks import RedisCacheSink as RedisCacheSink
    from cachebus.consumers.tracing import TracingObserver as TracingObserver
    from cachebus.contracts.errors import BackendUnavailable as BackendUnavailable
    from cachebus.contracts.errors import CachebusError as CachebusError
    from cachebus.contracts.errors import ConfigError as ConfigError
    from cachebus.contracts.errors import ContractError as ContractError
    from cachebus.contracts.errors import PublishError as PublishError
    from cachebus.contracts.errors import RegistryError as RegistryError
    from cachebus.contracts.events import Event as Event
    from cachebus.contracts.factory import EventFactory as EventFactory
    from cachebus.contracts.keys import KeyRef as KeyRef
    from cachebus.contracts.keys import KeySpace as KeySpace
    from cachebus.contracts.keys import PatternRef as PatternRef
    from cachebus.contracts.keys import StreamKeys as StreamKeys
    from cachebus.contracts.registry import Namespace as Namespace
    from cachebus.contracts.registry import Registry as Registry
    from cachebus.contracts.templates import KeyTemplate as KeyTemplate
    from cachebus.core.cache import Cache as Cache
    from cachebus.core.config import CacheConfig as CacheConfig
    from cachebus.core.connection import RedisSettings as RedisSettings
    from cachebus.core.connection import async_client as async_client
    from cachebus.core.connection import close_shared_pools as close_shared_pools
    from cachebus.core.connection import sync_client as sync_client
    from cachebus.core.local import LocalCache as LocalCache
    from cachebus.core.sync import SyncCache as SyncCache
    from cachebus.producers.producer import Producer as Producer
    from cachebus.producers.sync import SyncProducer as SyncProducer
    from cachebus.service import ConsumerService as ConsumerService
    from cachebus.settings import CachebusSettings as CachebusSettings

    __version__: str

# The README's "Public API" table lists the same names (tests/unit/test_public_api.py).
__all__ = [
    # the registry
    "KeyTemplate",
    "Namespace",
    "Registry",
    # running a service
    "CachebusSettings",
    "ConsumerService",
    # caches
    "Cache",
    "CacheConfig",
    "LocalCache",
    "SyncCache",
    # connections
    "RedisSettings",
    "async_client",
    "close_shared_pools",
    "sync_client",
    # keys and events
    "Event",
    "EventFactory",
    "KeyRef",
    "KeySpace",
    "PatternRef",
    "StreamKeys",
    # publishing
    "Producer",
    "SyncProducer",
    # consuming
    "BroadcastConfig",
    "BroadcastConsumer",
    "CallbackSink",
    "Consumer",
    "ConsumerConfig",
    "LocalCacheSink",
    "PartitionedConsumer",
    "RedisCacheSink",
    # observing
    "CacheHealthMetrics",
    "ConsumerMetrics",
    "TracingObserver",
    # errors (the whole tree: cachebus.contracts.errors)
    "BackendUnavailable",
    "CachebusError",
    "ConfigError",
    "ContractError",
    "PublishError",
    "RegistryError",
]

if not TYPE_CHECKING:
    _export, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.consumers.broadcast": ("BroadcastConsumer",),
            "cachebus.consumers.cache_metrics": ("CacheHealthMetrics",),
            "cachebus.consumers.config": ("BroadcastConfig", "ConsumerConfig"),
            "cachebus.consumers.metrics": ("ConsumerMetrics",),
            "cachebus.consumers.partitioned": ("PartitionedConsumer",),
            "cachebus.consumers.runtime": ("Consumer",),
            "cachebus.consumers.sinks": ("CallbackSink", "LocalCacheSink", "RedisCacheSink"),
            "cachebus.consumers.tracing": ("TracingObserver",),
            "cachebus.contracts.errors": (
                "BackendUnavailable",
                "CachebusError",
                "ConfigError",
                "ContractError",
                "PublishError",
                "RegistryError",
            ),
            "cachebus.contracts.events": ("Event",),
            "cachebus.contracts.factory": ("EventFactory",),
            "cachebus.contracts.keys": ("KeyRef", "KeySpace", "PatternRef", "StreamKeys"),
            "cachebus.contracts.registry": ("Namespace", "Registry"),
            "cachebus.contracts.templates": ("KeyTemplate",),
            "cachebus.core.cache": ("Cache",),
            "cachebus.core.config": ("CacheConfig",),
            "cachebus.core.connection": (
                "RedisSettings",
                "async_client",
                "close_shared_pools",
                "sync_client",
            ),
            "cachebus.core.local": ("LocalCache",),
            "cachebus.core.sync": ("SyncCache",),
            "cachebus.producers.producer": ("Producer",),
            "cachebus.producers.sync": ("SyncProducer",),
            "cachebus.service": ("ConsumerService",),
            "cachebus.settings": ("CachebusSettings",),
        },
    )

    def __getattr__(name: str) -> Any:
        if name == "__version__":  # from the installed metadata: pyproject.toml writes it once
            from cachebus.contracts.semconv import library_version

            return library_version()
        return _export(name)
