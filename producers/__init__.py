"""The producer library: services publish cache invalidations through it.

``Producer`` (asyncio) and ``SyncProducer`` share one implementation; every publish returns
the stream entry id or raises within :func:`publish_bound` of the settings.
"""

from cachebus.producers._core import (
    DEFAULT_MAXLEN,
    DEFAULT_PUBLISH_TIMEOUT,
    MAX_EVENTS_PER_ROUND_TRIP,
    publish_bound,
)
from cachebus.producers.invalidates import AsyncInvalidates, InvalidationScope, SyncInvalidates
from cachebus.producers.producer import AsyncBatch, Producer
from cachebus.producers.sync import SyncBatch, SyncProducer

__all__ = [
    "DEFAULT_MAXLEN",
    "DEFAULT_PUBLISH_TIMEOUT",
    "MAX_EVENTS_PER_ROUND_TRIP",
    "AsyncBatch",
    "AsyncInvalidates",
    "InvalidationScope",
    "Producer",
    "SyncBatch",
    "SyncInvalidates",
    "SyncProducer",
    "publish_bound",
]
