"""The producer library: services publish cache invalidations through it.

``Producer`` (asyncio) and ``SyncProducer`` share one implementation; every publish returns
the stream entry id or raises within :func:`publish_bound` of the settings.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.producers._core import publish_bound as publish_bound
    from cachebus.producers.producer import Producer as Producer
    from cachebus.producers.sync import SyncProducer as SyncProducer

__all__ = [
    "Producer",
    "SyncProducer",
    "publish_bound",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.producers._core": ("publish_bound",),
            "cachebus.producers.producer": ("Producer",),
            "cachebus.producers.sync": ("SyncProducer",),
        },
    )
