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

from cachebus.consumers.broadcast import BroadcastConsumer
from cachebus.consumers.cache_metrics import CacheHealthMetrics
from cachebus.consumers.config import (
    BroadcastConfig,
    ConsumerConfig,
    FlushReason,
    default_consumer_name,
)
from cachebus.consumers.entries import ClaimResult, Entry, GroupState, StreamState
from cachebus.consumers.metrics import ConsumerMetrics, PendingSummary, pending_summary
from cachebus.consumers.observe import CompositeObserver, ConsumerObserver, ConsumerStats, Health
from cachebus.consumers.partitioned import PartitionedConsumer
from cachebus.consumers.plan import Delivered, Plan, coalesce
from cachebus.consumers.retention import TrimResult, safe_min_id, trim_acknowledged
from cachebus.consumers.runtime import Consumer
from cachebus.consumers.sinks import CallbackSink, LocalCacheSink, RedisCacheSink, Sink
from cachebus.consumers.tracing import TracingObserver

__all__ = [
    # runtimes
    "BroadcastConsumer",
    "Consumer",
    "PartitionedConsumer",
    # configuration
    "BroadcastConfig",
    "ConsumerConfig",
    "FlushReason",
    "default_consumer_name",
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
    "ConsumerStats",
    "Health",
    "PendingSummary",
    "TracingObserver",
    "pending_summary",
    # values
    "ClaimResult",
    "Delivered",
    "Entry",
    "GroupState",
    "Plan",
    "StreamState",
    "TrimResult",
    "coalesce",
    # retention
    "safe_min_id",
    "trim_acknowledged",
]
