"""The ``send <stream>`` PRODUCER span (OpenTelemetry messaging semconv 1.28) of a publish.

One span per publish call: per event for single publishes, per round trip for a batch (with
``messaging.batch.message_count``). Its context is injected into every entry's envelope
headers (W3C ``traceparent``/``tracestate``), so consumers, FastStream's included, continue
the producer's trace. Only ``opentelemetry-api`` is used: without an SDK the tracer is a
no-op, attributes are never built, and nothing is injected unless an upstream context exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

__all__ = ["SendTracing"]

_SCOPE = "cachebus.producers"


class SendTracing:
    """Starts, annotates and ends the send spans of one producer (one stream)."""

    __slots__ = ("_base", "_name", "_tracer")

    def __init__(
        self, stream_key: str, address: tuple[str, int], provider: TracerProvider | None = None
    ) -> None:
        from cachebus import __version__

        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=provider)
        self._name = f"send {stream_key}"
        self._base: dict[str, Any] = {
            "messaging.system": "redis",
            "messaging.destination.name": stream_key,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "server.address": address[0],
            "server.port": address[1],
        }

    def start(self, payloads: Sequence[Mapping[str, Any]]) -> tuple[Span, dict[str, str]]:
        """A started span and the headers that carry its context (empty when there is none)."""
        span = self._tracer.start_span(self._name, kind=SpanKind.PRODUCER)
        if span.is_recording():
            attributes = dict(self._base)
            keys_count = sum(len(p.get("keys", ())) for p in payloads)
            if len(payloads) == 1:
                payload = payloads[0]
                attributes["cachebus.event_id"] = payload["event_id"]
                attributes["cachebus.namespace"] = payload["namespace"]
                attributes["cachebus.kind"] = payload["kind"]
            else:
                attributes["messaging.batch.message_count"] = len(payloads)
                attributes["cachebus.namespaces"] = sorted({p["namespace"] for p in payloads})
            attributes["cachebus.keys_count"] = keys_count
            span.set_attributes(attributes)
        headers: dict[str, str] = {}
        if span.get_span_context().is_valid:
            propagate.inject(headers, context=trace.set_span_in_context(span))
        return span, headers

    @staticmethod
    def succeeded(span: Span, entry_ids: Sequence[str]) -> None:
        if span.is_recording() and len(entry_ids) == 1:
            span.set_attribute("messaging.message.id", entry_ids[0])
        span.end()

    @staticmethod
    def failed(span: Span, error: BaseException) -> None:
        if span.is_recording():
            cause = error.__cause__ or error
            span.set_attribute("error.type", type(cause).__qualname__)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end()
