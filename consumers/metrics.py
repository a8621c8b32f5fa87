"""Consumer metrics through the OpenTelemetry metrics API (an SDK or Prometheus reader decides
where they go; without one every instrument is a no-op).

Counters, per consumer group: entries consumed (semconv ``messaging.client.consumed.messages``),
events applied (by namespace and kind), redelivered, claimed, acked, dead-lettered (by reason),
flushes (by reason), backend errors (by error type), registry drift (by namespace and
producer); and the group's counters kept in Redis (:mod:`cachebus.consumers.counters`), per
member, as sampled by whoever runs the consumer (they survive the members' crashes).
Histograms: the publish→apply delay of each event (now minus its ``created_at_ms``: clocks of
producer and consumer hosts must agree, NTP-close is enough at these scales; up to
:data:`DELAY_SAMPLES` events per batch, spread over it) and the duration of each batch apply.
Gauges: the group's lag and pending count (from the ``XINFO GROUPS`` the runtime reads anyway)
and the age of the group's oldest pending entry (from :func:`pending_summary`, sampled by
whoever runs the consumer, since a gauge callback cannot await Redis).

Labels are low-cardinality by construction: stream, group, namespace (registered names only),
kind, reason. Never keys, patterns or entry ids.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from cachebus.consumers.config import ConsumerConfig, FlushReason
from cachebus.consumers.counters import GroupCounters
from cachebus.consumers.entries import StreamState, stream_id, text
from cachebus.consumers.observe import ConsumerObserver, ReadSource
from cachebus.consumers.plan import Delivered
from cachebus.contracts import semconv as sc
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import map_redis_errors

__all__ = ["DELAY_BUCKETS", "DELAY_SAMPLES", "ConsumerMetrics", "PendingSummary", "pending_summary"]

#: Publish→apply delay buckets (seconds): healthy is milliseconds, a backlog is minutes.
DELAY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)  # fmt: skip


#: Events of one batch whose delay is recorded: all of a small batch, an even spread (oldest
#: and newest included) of a large one. An SDK histogram record costs 6-12 us, as much as
#: applying the event; the count of events is ``cachebus.consumer.applied``, not this.
DELAY_SAMPLES = 32

T = TypeVar("T")


def _spread(items: Sequence[T], k: int) -> Sequence[T]:
    if len(items) <= k:
        return items
    step = (len(items) - 1) / (k - 1)
    return [items[round(i * step)] for i in range(k)]


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """``XPENDING`` summary of a group: how many entries are unacked, and the oldest one."""

    count: int
    oldest_id: str | None

    def oldest_age_s(self, now_ms: int | None = None) -> float:
        """Seconds since the oldest pending entry was *added* (its id's time); 0 when none."""
        if not self.count or self.oldest_id is None:
            return 0.0
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return max(0.0, (now - stream_id(self.oldest_id)[0]) / 1000.0)


async def pending_summary(
    client: redis.asyncio.Redis, stream_key: str, group: str, where: str = "Redis"
) -> PendingSummary:
    with map_redis_errors(f"XPENDING {stream_key}", where):
        reply: Any = await client.xpending(stream_key, group)
    count = int(reply.get("pending") or 0)
    oldest = reply.get("min")
    return PendingSummary(count, text(oldest) if count and oldest else None)


def _recording(instrument: Any) -> bool:
    """False for an instrument that drops everything: a no-op one, or a proxy of the global
    meter provider before an SDK was set (checked per batch: the SDK may come later)."""
    if isinstance(instrument, metrics.NoOpHistogram):
        return False
    return getattr(instrument, "_real_instrument", True) is not None


class ConsumerMetrics(ConsumerObserver):
    """Metrics of one consumer group member (or broadcast reader, ``group=None``)."""

    def __init__(
        self,
        stream_key: str,
        *,
        group: str | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(sc.METER_CONSUMER, meter_provider=meter_provider)
        self._group = group
        base: dict[str, Any] = {sc.ATTR_SYSTEM: sc.SYSTEM, sc.ATTR_DESTINATION: stream_key}
        if group is not None:
            base[sc.ATTR_CONSUMER_GROUP] = group
        self._base = base
        self._by_source = {
            source: {
                **base,
                sc.ATTR_OPERATION_NAME: sc.OP_XAUTOCLAIM if source == "claimed" else "xreadgroup",
                sc.ATTR_SOURCE: source,
            }
            for source in ("new", "pending", "claimed")
        }
        self._attrs: dict[tuple[str, str], dict[str, Any]] = {}
        self._lag: int | None = None
        self._pending: int | None = None
        self._oldest: PendingSummary | None = None
        self._kept: GroupCounters | None = None

        def counter(name: str, unit: str, description: str) -> Any:
            return meter.create_counter(name, unit=unit, description=description)

        self._consumed = counter(
            "messaging.client.consumed.messages", "{message}", "Stream entries read"
        )
        self._applied = counter("cachebus.consumer.applied", "{event}", "Events applied")
        self._redelivered = counter(
            "cachebus.consumer.redelivered", "{message}", "Entries delivered more than once"
        )
        self._claimed = counter(
            "cachebus.consumer.claimed", "{message}", "Entries claimed from dead members"
        )
        self._acked = counter("cachebus.consumer.acked", "{message}", "Entries acknowledged")
        self._dead = counter(
            "cachebus.consumer.dead_lettered", "{message}", "Entries sent to the dead-letter stream"
        )
        self._flushes = counter(
            "cachebus.consumer.flushes", "{flush}", "Flushes of the cache scope, by reason"
        )
        self._errors = counter(
            "cachebus.consumer.backend_errors", "{error}", "Redis unreachable while consuming"
        )
        self._drift = counter(
            "cachebus.consumer.drift",
            "{event}",
            "Events whose producer's registry fingerprint differs from this consumer's",
        )
        meter.create_observable_counter(
            "cachebus.group.events",
            [self._observe_kept],
            unit="{event}",
            description="The group's counters kept in Redis, per member (survive crashes)",
        )
        self._delay = meter.create_histogram(
            "cachebus.consumer.publish_to_apply",
            unit="s",
            description="Delay from an event's creation (created_at_ms) to its application",
            explicit_bucket_boundaries_advisory=DELAY_BUCKETS,
        )
        self._batch = meter.create_histogram(
            "cachebus.consumer.apply.duration",
            unit="s",
            description="Duration of one batch apply through the sinks",
        )
        meter.create_observable_gauge(
            "cachebus.consumer.lag",
            [self._observe_lag],
            unit="{message}",
            description="Entries in the stream the group has not read yet (XINFO GROUPS lag)",
        )
        meter.create_observable_gauge(
            "cachebus.consumer.pending",
            [self._observe_pending],
            unit="{message}",
            description="Entries read by the group and not acknowledged yet",
        )
        meter.create_observable_gauge(
            "cachebus.consumer.oldest_pending_age",
            [self._observe_oldest],
            unit="s",
            description="Age of the group's oldest unacknowledged entry (since it was added)",
        )

    @classmethod
    def for_consumer(
        cls,
        config: ConsumerConfig,
        *,
        keys: StreamKeys | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> ConsumerMetrics:
        stream_key = (keys or StreamKeys()).destination(config.stream)
        return cls(stream_key, group=config.group, meter_provider=meter_provider)

    # ---- sampled from outside ----------------------------------------------------------
    def observe_pending(self, summary: PendingSummary) -> None:
        """Record an ``XPENDING`` sample (see :func:`pending_summary`)."""
        self._oldest = summary
        self._pending = summary.count

    def observe_counters(self, counters: GroupCounters) -> None:
        """Record a sample of the group's counters hash (see ``cachebus.consumers.counters``)."""
        self._kept = counters

    # ---- hooks ------------------------------------------------------------------------------
    def on_read(self, source: ReadSource, count: int, state: StreamState | None) -> None:
        if state is not None and self._group is not None:
            group = state.groups.get(self._group)
            if group is not None:
                self._lag, self._pending = group.lag, group.pending

    def on_received(
        self,
        source: ReadSource,
        count: int,
        delivered: Sequence[Delivered],
        started: float,
        ended: float,
    ) -> None:
        attributes = self._by_source[source]
        self._consumed.add(count, attributes)
        if source == "claimed":
            self._claimed.add(count, self._base)
        if source != "new":
            again = sum(1 for d in delivered if d.deliveries > 1)
            if again:
                self._redelivered.add(again, self._base)

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        if not delivered:
            return
        base = self._base
        self._batch.record(ended - started, base)
        if not _recording(self._delay):
            return  # no SDK: nothing would keep what the per-event work below computes
        events = [item.event for item in delivered]
        for key, n in Counter([(e.namespace, e.kind) for e in events]).items():
            self._applied.add(n, self._attributes(key))
        now_ms = time.time() * 1000.0
        record = self._delay.record
        for delay_ms in [now_ms - e.created_at_ms for e in _spread(events, DELAY_SAMPLES)]:
            # A producer clock ahead of ours would give a negative delay: count it as zero.
            record(delay_ms / 1000.0 if delay_ms > 0 else 0.0, base)

    def _attributes(self, key: tuple[str, str]) -> dict[str, Any]:
        attributes = self._attrs.get(key)
        if attributes is None:
            attributes = self._attrs[key] = {
                **self._base,
                sc.ATTR_NAMESPACE: key[0],
                sc.ATTR_KIND: key[1],
            }
        return attributes

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None:
        self._acked.add(len(ids), self._base)

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        self._flushes.add(1, {**self._base, sc.ATTR_FLUSH_REASON: reason.value})

    def on_dead_letter(self, entry_id: str, reason: str, deliveries: int) -> None:
        self._dead.add(1, {**self._base, "cachebus.reason": reason})

    def on_backend_error(self, error: Exception) -> None:
        self._errors.add(1, {**self._base, sc.ATTR_ERROR_TYPE: type(error).__qualname__})

    def on_drift(self, producer: str, namespace: str, theirs: str, ours: str) -> None:
        self._drift.add(
            1, {**self._base, sc.ATTR_NAMESPACE: namespace, "cachebus.producer": producer}
        )

    # ---- gauges -----------------------------------------------------------------------------
    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._lag is None else [Observation(self._lag, self._base)]

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._pending is None else [Observation(self._pending, self._base)]

    def _observe_kept(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._kept is None:
            return []
        out = []
        for member, counts in self._kept.members.items():
            for name, value in counts.items():
                counter, _, reason = name.partition(".")
                attributes = {**self._base, "cachebus.member": member, "cachebus.counter": counter}
                if reason:
                    attributes[sc.ATTR_FLUSH_REASON] = reason
                out.append(Observation(value, attributes))
        return out

    def _observe_oldest(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._oldest is None:
            return []
        return [Observation(self._oldest.oldest_age_s(), self._base)]
