"""Metrics of the commit-log relay (OpenTelemetry metrics API; no-ops without an SDK).

The slot's retained WAL is the classic way logical decoding fills a database's disk: a relay
that stops (or falls behind) keeps every WAL segment since its confirmed position. Both
figures come from ``pg_replication_slots``, read by the relay every ``metrics_interval_s``:

* ``cachebus.cdc.slot.retained`` (By): WAL the slot keeps from removal (current WAL position
  minus the slot's ``restart_lsn``);
* ``cachebus.cdc.slot.lag`` (By): WAL not confirmed yet (minus ``confirmed_flush_lsn``);
* ``cachebus.cdc.transactions``, ``cachebus.cdc.changes``, ``cachebus.cdc.events`` and
  ``cachebus.cdc.gaps``: counters since the relay started.

``cachebus doctor --database`` warns on the same figures for a slot nobody watches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from cachebus.contracts import semconv as sc

if TYPE_CHECKING:
    from cachebus.producers.cdc.config import CdcStats

__all__ = ["register_metrics", "watch_slot"]


def register_metrics(
    stats: CdcStats, slot: str, meter_provider: MeterProvider | None = None
) -> None:
    """Observe ``stats`` (kept current by the relay) through ``meter_provider``."""
    meter = metrics.get_meter(sc.METER_PRODUCER, meter_provider=meter_provider)
    attributes = {"cachebus.cdc.slot": slot}

    def gauge(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(getattr(stats, field), attributes)]

        return observe

    meter.create_observable_gauge(
        "cachebus.cdc.slot.retained",
        [gauge("retained_bytes")],
        unit="By",
        description="WAL the replication slot keeps from removal (disk it holds)",
    )
    meter.create_observable_gauge(
        "cachebus.cdc.slot.lag",
        [gauge("lag_bytes")],
        unit="By",
        description="WAL the relay has not confirmed yet",
    )
    for field, unit, description in (
        ("transactions", "{transaction}", "Committed transactions relayed"),
        ("changes", "{change}", "Row changes of mapped tables read"),
        ("events", "{event}", "Invalidation events published"),
        ("gaps", "{gap}", "Gaps (slot lost, missing, recreated): every namespace flushed"),
    ):
        meter.create_observable_counter(
            f"cachebus.cdc.{field}",
            [gauge(field)],
            unit=unit,
            description=description,
        )


def watch_slot(
    stop: threading.Event,
    interval_s: float,
    connect: Callable[[], Any],
    slot: str,
    stats: CdcStats,
) -> None:
    """Read the slot's retained WAL and lag into ``stats`` every ``interval_s`` until
    ``stop`` (a thread of its own, with its own connection: a connect or a slow catalog read
    never delays the stream)."""
    import psycopg2

    from cachebus.producers.cdc.database import slot_info

    conn = None
    while not stop.wait(interval_s):
        try:
            if conn is None:
                conn = connect()
            info = slot_info(conn.cursor(), slot)
        except psycopg2.Error:
            if conn is not None:
                conn.close()
            conn = None
            continue
        if info is not None:
            stats.retained_bytes = info.retained_bytes
            stats.lag_bytes = info.lag_bytes
    if conn is not None:
        conn.close()
