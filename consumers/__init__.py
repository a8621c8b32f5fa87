"""The consumer runtime: groups with acks, replay, claiming, dead letters, gap detection.

Two shapes:

* :class:`Consumer` (group mode) for a service's shared Redis cache: one consumer group per
  service, each event applied once per service, at least once;
* :class:`BroadcastConsumer` for in-process L1 caches: every process sees every event.

:class:`PartitionedConsumer` runs a group-mode consumer on every partition of a partitioned
stream (``StreamKeys(partitions=N)``), on one Redis or a Redis Cluster.

Observability plugs in as observers: :class:`TracingObserver` (OpenTelemetry spans),
:class:`ConsumerMetrics` and :class:`CacheHealthMetrics` (OpenTelemetry metrics), combined with
:class:`CompositeObserver`.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.consumers.broadcast import BroadcastConsumer as BroadcastConsumer
    from cachebus.consumers.cache_metrics import CacheHealthMetrics as CacheHealthMetrics
    from cachebus.consumers.config import BroadcastConfig as BroadcastConfig
    from cachebus.consumers.config import ConsumerConfig as ConsumerConfig
    from cachebus.consumers.metrics import ConsumerMetrics as ConsumerMetrics
    from cachebus.consumers.observe import CompositeObserver as CompositeObserver
    from cachebus.consumers.observe import ConsumerObserver as ConsumerObserver
    from cachebus.consumers.observe import Health as Health
    from cachebus.consumers.partitioned import PartitionedConsumer as PartitionedConsumer
    from cachebus.consumers.runtime import Consumer as Consumer
    from cachebus.consumers.sinks import CallbackSink as CallbackSink
    from cachebus.consumers.sinks import LocalCacheSink as LocalCacheSink
    from cachebus.consumers.sinks import RedisCacheSink as RedisCacheSink
    from cachebus.consumers.sinks import Sink as Sink
    from cachebus.consumers.tracing import TracingObserver as TracingObserver

__all__ = [
    # runtimes
    "BroadcastConsumer",
    "Consumer",
    "PartitionedConsumer",
    # configuration
    "BroadcastConfig",
    "ConsumerConfig",
    # sinks
    "CallbackSink",
    "LocalCacheSink",
    "RedisCacheSink",
    "Sink",
    # observing
    "CacheHealthMetrics",
    "CompositeObserver",
    "ConsumerMetrics",
    "ConsumerObserver",
    "Health",
    "TracingObserver",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.consumers.broadcast": ("BroadcastConsumer",),
            "cachebus.consumers.cache_metrics": ("CacheHealthMetrics",),
            "cachebus.consumers.config": (
                "BroadcastConfig",
                "ConsumerConfig",
            ),
            "cachebus.consumers.metrics": ("ConsumerMetrics",),
            "cachebus.consumers.observe": (
                "CompositeObserver",
                "ConsumerObserver",
                "Health",
            ),
            "cachebus.consumers.partitioned": ("PartitionedConsumer",),
            "cachebus.consumers.runtime": ("Consumer",),
            "cachebus.consumers.sinks": (
                "CallbackSink",
                "LocalCacheSink",
                "RedisCacheSink",
                "Sink",
            ),
            "cachebus.consumers.tracing": ("TracingObserver",),
        },
    )
