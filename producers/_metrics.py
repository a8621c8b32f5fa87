"""Producer metrics (OpenTelemetry metrics API): events sent, and how long a send took.

Semconv 1.28 names: ``messaging.client.sent.messages`` (counter, one per event, with
``error.type`` when the round trip failed) and ``messaging.client.operation.duration``
(histogram, seconds, one per round trip). Without an SDK the instruments are no-ops.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from cachebus.contracts import semconv as sc

__all__ = ["DURATION_BUCKETS", "SendMetrics"]

#: Seconds; semconv's advice for messaging client operation durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class SendMetrics:
    """Instruments of one producer (one stream)."""

    __slots__ = ("_duration", "_failed", "_ok", "_sent")

    def __init__(
        self,
        stream_key: str,
        address: tuple[str, int],
        meter_provider: MeterProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(sc.METER_PRODUCER, meter_provider=meter_provider)
        self._sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Invalidation events the producer tried to append to the stream",
        )
        self._duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Duration of one publish round trip (one XADD pipeline)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ok: dict[str, Any] = {
            sc.ATTR_SYSTEM: sc.SYSTEM,
            sc.ATTR_DESTINATION: stream_key,
            sc.ATTR_OPERATION_NAME: sc.OP_SEND,
            sc.ATTR_OPERATION_TYPE: sc.OP_SEND,
            sc.ATTR_SERVER_ADDRESS: address[0],
            sc.ATTR_SERVER_PORT: address[1],
        }
        self._failed: dict[str, dict[str, Any]] = {}

    def sent(self, count: int, seconds: float) -> None:
        self._sent.add(count, self._ok)
        self._duration.record(seconds, self._ok)

    def failed(self, count: int, seconds: float, error_type: str) -> None:
        attributes = self._failed.get(error_type)
        if attributes is None:
            attributes = self._failed[error_type] = {**self._ok, sc.ATTR_ERROR_TYPE: error_type}
        self._sent.add(count, attributes)
        self._duration.record(seconds, attributes)
