"""The ``send <stream>`` PRODUCER span (OpenTelemetry messaging semconv 1.28) of a publish.

One span per publish call: per event for single publishes, per round trip for a batch (with
``messaging.batch.message_count``). Its context is injected into every entry's envelope
headers (W3C ``traceparent``/``tracestate``), so consumers, FastStream's included, continue
the producer's trace. Only ``opentelemetry-api`` is used: without an SDK the tracer is a
no-op, attributes are never built, and nothing is injected unless an upstream context exists.

The same object records the producer's metrics (:mod:`cachebus.producers._metrics`): each publish
gets a :class:`Send` handle carrying its span and start time, ended by ``succeeded``/``failed``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from cachebus.contracts import semconv as sc
from cachebus.producers._metrics import SendMetrics

__all__ = ["Send", "SendTracing"]


class Send:
    """One publish round trip in flight: its span, its start time and its size."""

    __slots__ = ("count", "span", "started")

    def __init__(self, span: Span, count: int) -> None:
        self.span = span
        self.count = count
        self.started = time.perf_counter()


class SendTracing:
    """Starts, annotates and ends the send spans of one producer (one stream)."""

    __slots__ = ("_base", "_metrics", "_name", "_tracer")

    def __init__(
        self,
        stream_key: str,
        address: tuple[str, int],
        provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            sc.TRACER_PRODUCER, sc.library_version(), tracer_provider=provider
        )
        self._metrics = SendMetrics(stream_key, address, meter_provider)
        self._name = f"{sc.OP_SEND} {stream_key}"
        self._base: dict[str, Any] = {
            sc.ATTR_SYSTEM: sc.SYSTEM,
            sc.ATTR_DESTINATION: stream_key,
            sc.ATTR_OPERATION_TYPE: sc.OP_SEND,
            sc.ATTR_OPERATION_NAME: sc.OP_SEND,
            sc.ATTR_SERVER_ADDRESS: address[0],
            sc.ATTR_SERVER_PORT: address[1],
        }

    def start(self, payloads: Sequence[Mapping[str, Any]]) -> tuple[Send, dict[str, str]]:
        """A started send and the headers that carry its context (empty when there is none)."""
        span = self._tracer.start_span(self._name, kind=SpanKind.PRODUCER)
        if span.is_recording():
            attributes = dict(self._base)
            keys_count = sum(len(p.get("keys", ())) for p in payloads)
            if len(payloads) == 1:
                payload = payloads[0]
                attributes[sc.ATTR_EVENT_ID] = payload["event_id"]
                attributes[sc.ATTR_NAMESPACE] = payload["namespace"]
                attributes[sc.ATTR_KIND] = payload["kind"]
            else:
                attributes[sc.ATTR_BATCH_COUNT] = len(payloads)
                attributes[sc.ATTR_NAMESPACES] = sorted({p["namespace"] for p in payloads})
            attributes[sc.ATTR_KEYS_COUNT] = keys_count
            span.set_attributes(attributes)
        headers: dict[str, str] = {}
        if span.get_span_context().is_valid:
            propagate.inject(headers, context=trace.set_span_in_context(span))
        return Send(span, len(payloads)), headers

    def succeeded(self, send: Send, entry_ids: Sequence[str]) -> None:
        span = send.span
        if span.is_recording() and len(entry_ids) == 1:
            span.set_attribute(sc.ATTR_MESSAGE_ID, entry_ids[0])
        span.end()
        self._metrics.sent(len(entry_ids), time.perf_counter() - send.started)

    def failed(self, send: Send, error: BaseException) -> None:
        span = send.span
        error_type = type(error.__cause__ or error).__qualname__
        if span.is_recording():
            span.set_attribute(sc.ATTR_ERROR_TYPE, error_type)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end()
        self._metrics.failed(send.count, time.perf_counter() - send.started, error_type)
