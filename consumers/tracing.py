"""Consumer spans (OpenTelemetry messaging semconv 1.28), made by an observer after the fact.

* ``receive <stream>`` (CLIENT), one per read: XREADGROUP, or XAUTOCLAIM for claimed entries,
  with ``messaging.batch.message_count`` and a link to each message's creation context (the
  producer's ``send`` span, carried in the entry's ``traceparent``);
* ``process <stream>`` (CONSUMER), one per event applied. Its *parent* is the producer's
  context, so the consumer's work shows inside the producer's trace; it also links to it (the
  semconv default, for backends that only follow links). A dead-lettered event gets one too,
  with ``error.type`` set to the dead-letter reason;
* ``settle <stream>`` (CLIENT), one per XACK, linked to the messages it settles;
* ``flush <stream>`` (INTERNAL, ours), one per flush of the cache scope, with its reason.

The runtime reports monotonic start/end times through :class:`ConsumerObserver` hooks, and
the spans are created with those times, so the runtime itself carries no tracing code. With no
SDK configured the tracer is a no-op: each hook sees that first and returns, so the cost per
batch is well under a microsecond whatever its size. (A no-op tracer still hands back the
parent's context as a "span", so that check is on the tracer, not on the spans it returns.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace import TracerProvider as TracerProviderApi

from cachebus.consumers.config import ConsumerConfig, FlushReason
from cachebus.consumers.observe import ConsumerObserver, ReadSource
from cachebus.consumers.plan import Delivered
from cachebus.contracts import semconv as sc
from cachebus.contracts.codec import DecodedEntry
from cachebus.contracts.keys import StreamKeys

__all__ = ["TracingObserver", "creation_context"]

#: Creation contexts remembered between a read and its ack (for the settle span's links).
_MAX_REMEMBERED = 20_000


def creation_context(item: Delivered) -> SpanContext | None:
    """The producer's span context carried by an event's envelope headers, if valid.

    Headers are untrusted: only a well-formed W3C ``traceparent`` (and ``tracestate``) is
    handed to the propagator.
    """
    if "traceparent" not in item.headers:
        return None
    carrier = DecodedEntry(item.event, item.headers, item.entry_id).trace_carrier()
    if not carrier:
        return None
    context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return context if context.is_valid else None


class TracingObserver(ConsumerObserver):
    """Spans for one consumer (group mode) or broadcast reader (``group=None``)."""

    def __init__(
        self,
        stream_key: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        server: tuple[str, int] | None = None,
        tracer_provider: TracerProviderApi | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            sc.TRACER_CONSUMER, sc.library_version(), tracer_provider=tracer_provider
        )
        self._names = {
            op: f"{op} {stream_key}" for op in (sc.OP_RECEIVE, sc.OP_PROCESS, sc.OP_SETTLE)
        }
        self._flush_name = f"flush {stream_key}"
        base: dict[str, Any] = {sc.ATTR_SYSTEM: sc.SYSTEM, sc.ATTR_DESTINATION: stream_key}
        if group is not None:
            base[sc.ATTR_CONSUMER_GROUP] = group
        if consumer is not None:
            base[sc.ATTR_CLIENT_ID] = consumer
        if server is not None:
            base[sc.ATTR_SERVER_ADDRESS], base[sc.ATTR_SERVER_PORT] = server
        self._base = base
        self._contexts: dict[str, SpanContext] = {}

    @classmethod
    def for_consumer(
        cls,
        config: ConsumerConfig,
        *,
        keys: StreamKeys | None = None,
        server: tuple[str, int] | None = None,
        tracer_provider: TracerProviderApi | None = None,
    ) -> TracingObserver:
        """The observer for a :class:`~cachebus.consumers.Consumer` with ``config`` and ``keys``."""
        return cls(
            (keys or StreamKeys()).destination(config.stream),
            group=config.group,
            consumer=config.consumer,
            server=server,
            tracer_provider=tracer_provider,
        )

    # ---- helpers ----------------------------------------------------------------------------
    def _start(
        self,
        name: str,
        kind: SpanKind,
        at: int,
        attributes: dict[str, Any],
        links: Sequence[Link] = (),
        parent: SpanContext | None = None,
    ) -> Span:
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else None
        return self._tracer.start_span(
            name, context, kind, attributes, links or None, start_time=at
        )

    def _active(self) -> bool:
        """False while spans cannot record: no SDK behind the (proxy) tracer."""
        tracer = self._tracer
        if isinstance(tracer, trace.ProxyTracer):
            # The global provider may be set after this observer was made: ask every time.
            tracer = getattr(tracer, "_tracer", tracer)
        return not isinstance(tracer, trace.NoOpTracer)

    def _remember(self, entry_id: str, context: SpanContext) -> None:
        if len(self._contexts) >= _MAX_REMEMBERED:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[entry_id] = context

    # ---- hooks ------------------------------------------------------------------------------
    def on_received(
        self,
        source: ReadSource,
        count: int,
        delivered: Sequence[Delivered],
        started: float,
        ended: float,
    ) -> None:
        if not self._active():
            return
        offset = _offset_ns()
        attributes = {
            **self._base,
            sc.ATTR_OPERATION_TYPE: sc.OP_RECEIVE,
            sc.ATTR_OPERATION_NAME: sc.OP_XAUTOCLAIM if source == "claimed" else sc.OP_XREADGROUP,
            sc.ATTR_BATCH_COUNT: count,
            sc.ATTR_SOURCE: source,
        }
        span = self._start(
            self._names[sc.OP_RECEIVE], SpanKind.CLIENT, _ns(started, offset), attributes
        )
        for item in delivered:
            context = creation_context(item)
            if context is not None:
                self._remember(item.entry_id, context)
                if span.is_recording():
                    span.add_link(context, {sc.ATTR_MESSAGE_ID: item.entry_id})
        span.end(_ns(ended, offset))

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        if not delivered or not self._active():
            return
        offset = _offset_ns()
        start, end = _ns(started, offset), _ns(ended, offset)
        remembered = self._contexts
        for item in delivered:
            # Extracted once per read (on_received); broadcast readers extract here.
            context = remembered.get(item.entry_id) or creation_context(item)
            span = self._start(
                self._names[sc.OP_PROCESS],
                SpanKind.CONSUMER,
                start,
                self._process_attributes(item),
                [Link(context)] if context is not None else (),
                parent=context,
            )
            span.end(end)

    def _process_attributes(self, item: Delivered) -> dict[str, Any]:
        event = item.event
        attributes = {
            **self._base,
            sc.ATTR_OPERATION_TYPE: sc.OP_PROCESS,
            sc.ATTR_OPERATION_NAME: sc.OP_PROCESS,
            sc.ATTR_MESSAGE_ID: item.entry_id,
            sc.ATTR_EVENT_ID: event.event_id,
            sc.ATTR_NAMESPACE: event.namespace,
            sc.ATTR_KIND: event.kind,
            sc.ATTR_DELIVERY_COUNT: item.deliveries,
        }
        if event.kind == "keys":
            attributes[sc.ATTR_KEYS_COUNT] = len(event.keys)
        elif event.kind == "pattern":
            attributes[sc.ATTR_PATTERNS_COUNT] = 1
        return attributes

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None:
        if not self._active():
            return
        offset = _offset_ns()
        attributes = {
            **self._base,
            sc.ATTR_OPERATION_TYPE: sc.OP_SETTLE,
            sc.ATTR_OPERATION_NAME: sc.OP_ACK,
            sc.ATTR_BATCH_COUNT: len(ids),
        }
        span = self._start(
            self._names[sc.OP_SETTLE], SpanKind.CLIENT, _ns(started, offset), attributes
        )
        contexts = self._contexts
        recording = span.is_recording()
        for entry_id in ids:
            context = contexts.pop(entry_id, None)
            if context is not None and recording:
                span.add_link(context, {sc.ATTR_MESSAGE_ID: entry_id})
        span.end(_ns(ended, offset))

    def on_dead_letter(self, entry_id: str, reason: str, deliveries: int) -> None:
        if not self._active():
            return
        context = self._contexts.pop(entry_id, None)  # dead letters are acked without on_acked
        attributes = {
            **self._base,
            sc.ATTR_OPERATION_TYPE: sc.OP_PROCESS,
            sc.ATTR_OPERATION_NAME: sc.OP_PROCESS,
            sc.ATTR_MESSAGE_ID: entry_id,
            sc.ATTR_DELIVERY_COUNT: deliveries,
            sc.ATTR_ERROR_TYPE: reason,
        }
        span = self._start(
            self._names[sc.OP_PROCESS],
            SpanKind.CONSUMER,
            time.time_ns(),
            attributes,
            [Link(context)] if context is not None else (),
            parent=context,
        )
        if span.is_recording():
            span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {reason}"))
        span.end()

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        if not self._active():
            return
        attributes = {
            **self._base,
            sc.ATTR_FLUSH_REASON: reason.value,
            sc.ATTR_NAMESPACES_COUNT: len(namespaces),
            sc.ATTR_NAMESPACES: sorted(namespaces),
        }
        span = self._start(self._flush_name, SpanKind.INTERNAL, time.time_ns(), attributes)
        if span.is_recording():
            span.add_event("flushed", {"detail": detail[:200]})
        span.end()


def _offset_ns() -> int:
    """Wall-clock minus monotonic nanoseconds, to place monotonic times on the span clock."""
    return time.time_ns() - time.monotonic_ns()


def _ns(monotonic_s: float, offset: int) -> int:
    return int(monotonic_s * 1e9) + offset
