"""Invalidations from PostgreSQL's commit log: no writer can forget to invalidate.

:class:`CdcRelay` reads a logical replication slot (``pgoutput``) over the tables the registry
file maps (``[tables."schema.table"]``, see :mod:`cachebus.contracts.tables`) and publishes
each committed transaction's invalidations, confirming the slot only after Redis accepted
them. Needs ``cachebus[cdc]`` (psycopg2).
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.producers.cdc.config import CdcConfig as CdcConfig
    from cachebus.producers.cdc.config import CdcStats as CdcStats
    from cachebus.producers.cdc.publish import CdcPublisher as CdcPublisher
    from cachebus.producers.cdc.relay import CdcRelay as CdcRelay

__all__ = ["CdcConfig", "CdcPublisher", "CdcRelay", "CdcStats"]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.producers.cdc.publish": ("CdcPublisher",),
            "cachebus.producers.cdc.config": ("CdcConfig", "CdcStats"),
            "cachebus.producers.cdc.relay": ("CdcRelay",),
        },
    )
