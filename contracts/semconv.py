"""Names of span attributes, span kinds and metrics, shared by producers, consumers and the CLI.

The messaging names follow the OpenTelemetry semantic conventions **v1.28** (``send`` replaced
``publish`` there; ``receive``/``settle`` are CLIENT spans, ``process`` is CONSUMER). They are
plain strings here so the wire contract, not a semconv package version, decides them: a
dashboard built on these names keeps working when the SDK moves on. Our own attributes live
under ``cachebus.*`` and carry counts, never raw keys or patterns (cardinality, and keys may
hold user ids).
"""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = [
    "ATTR_BATCH_COUNT",
    "ATTR_CONSUMER_GROUP",
    "ATTR_CLIENT_ID",
    "ATTR_DELIVERY_COUNT",
    "ATTR_DESTINATION",
    "ATTR_ERROR_TYPE",
    "ATTR_EVENT_ID",
    "ATTR_FLUSH_REASON",
    "ATTR_KEYS_COUNT",
    "ATTR_KIND",
    "ATTR_MESSAGE_ID",
    "ATTR_NAMESPACE",
    "ATTR_NAMESPACES",
    "ATTR_NAMESPACES_COUNT",
    "ATTR_OPERATION_NAME",
    "ATTR_OPERATION_TYPE",
    "ATTR_PATTERNS_COUNT",
    "ATTR_SERVER_ADDRESS",
    "ATTR_SERVER_PORT",
    "ATTR_SOURCE",
    "ATTR_SYSTEM",
    "METER_CACHE",
    "METER_CONSUMER",
    "METER_PRODUCER",
    "OP_ACK",
    "OP_PROCESS",
    "OP_RECEIVE",
    "OP_SEND",
    "OP_SETTLE",
    "OP_XAUTOCLAIM",
    "OP_XREADGROUP",
    "SEMCONV_VERSION",
    "SYSTEM",
    "TRACER_CONSUMER",
    "TRACER_PRODUCER",
    "library_version",
]

#: The semantic conventions version these names follow.
SEMCONV_VERSION = "1.28.0"

#: ``messaging.system``: no well-known value exists for Redis Streams; FastStream uses "redis".
SYSTEM = "redis"

TRACER_PRODUCER = "cachebus.producers"
TRACER_CONSUMER = "cachebus.consumers"
METER_PRODUCER = "cachebus.producers"
METER_CONSUMER = "cachebus.consumers"
METER_CACHE = "cachebus.cache"


@functools.cache
def library_version() -> str:
    """cachebus's version, the tracers' instrumentation version: from the installed metadata,
    so pyproject.toml is the one place it is written ("" in a checkout that was never
    installed)."""
    try:
        return metadata.version("cachebus")
    except metadata.PackageNotFoundError:
        return ""


# ---- messaging.* (semconv 1.28) -----------------------------------------------------------
ATTR_SYSTEM = "messaging.system"
ATTR_DESTINATION = "messaging.destination.name"
ATTR_CONSUMER_GROUP = "messaging.consumer.group.name"
ATTR_CLIENT_ID = "messaging.client.id"
ATTR_MESSAGE_ID = "messaging.message.id"
ATTR_OPERATION_TYPE = "messaging.operation.type"
ATTR_OPERATION_NAME = "messaging.operation.name"
ATTR_BATCH_COUNT = "messaging.batch.message_count"
ATTR_SERVER_ADDRESS = "server.address"
ATTR_SERVER_PORT = "server.port"
ATTR_ERROR_TYPE = "error.type"

#: ``messaging.operation.type`` values.
OP_SEND = "send"
OP_RECEIVE = "receive"
OP_PROCESS = "process"
OP_SETTLE = "settle"
#: ``messaging.operation.name`` values (the system-specific command).
OP_XREADGROUP = "xreadgroup"
OP_XAUTOCLAIM = "xautoclaim"
OP_ACK = "ack"

# ---- cachebus.* (ours) ---------------------------------------------------------------------
ATTR_EVENT_ID = "cachebus.event_id"
ATTR_NAMESPACE = "cachebus.namespace"
ATTR_NAMESPACES = "cachebus.namespaces"
ATTR_NAMESPACES_COUNT = "cachebus.namespaces_count"
ATTR_KIND = "cachebus.kind"
ATTR_KEYS_COUNT = "cachebus.keys_count"
ATTR_PATTERNS_COUNT = "cachebus.patterns_count"
ATTR_DELIVERY_COUNT = "cachebus.delivery_count"
ATTR_FLUSH_REASON = "cachebus.flush_reason"
#: Where a consumer batch came from: ``new``, ``pending`` (own, after a restart), ``claimed``.
ATTR_SOURCE = "cachebus.source"
