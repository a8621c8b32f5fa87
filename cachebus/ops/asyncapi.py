"""An AsyncAPI 3.0 document of the invalidation channel, built from the same models as the
committed JSON Schema (``contracts/schema``), so the two never disagree.

The document says what the wire carries: one Redis Stream per channel, one entry per event,
whose ``__data__`` field holds FastStream's JSON envelope (``{"data": "<event JSON>",
"headers": {...}}``). The *payload* is the event; the *headers* are the envelope's headers
(``correlation_id`` is the ``event_id``; ``traceparent`` carries the producer's span). This is
the shape FastStream's own AsyncAPI generator gives a ``StreamSub`` of these models.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from cachebus.contracts.codec import CONTENT_TYPE, FIELD
from cachebus.contracts.events import SCHEMA_VERSION
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.schema import envelope_schema, event_schema

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
_MESSAGE = "InvalidationEvent"


def _version() -> str:
    try:
        return metadata.version("cachebus")
    except metadata.PackageNotFoundError:
        return "0"


def _as_asyncapi_schema(node: Any) -> Any:
    """JSON Schema 2020-12 as generated -> AsyncAPI Schema (refs into components, and
    ``discriminator`` as the property name, which is what AsyncAPI's schema object takes)."""
    if isinstance(node, list):
        return [_as_asyncapi_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$schema", "$id", "$defs"):
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/$defs/", "#/components/schemas/")
        elif key == "discriminator" and isinstance(value, dict):
            out[key] = value["propertyName"]
        else:
            out[key] = _as_asyncapi_schema(value)
    return out


def asyncapi_document(
    keys: StreamKeys | None = None, stream: str = "inval", *, redis_url: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI document of stream ``stream`` (its Redis key from ``keys``)."""
    keys = keys or StreamKeys()
    event = event_schema()
    schemas: dict[str, Any] = {
        name: _as_asyncapi_schema(schema) for name, schema in event["$defs"].items()
    }
    schemas[_MESSAGE] = _as_asyncapi_schema(event)
    headers = copy.deepcopy(envelope_schema()["properties"]["headers"])
    address = keys.stream(stream)
    server: dict[str, Any] = {"host": "localhost:6379", "protocol": "redis"}
    if redis_url:
        parts = urlsplit(redis_url)  # host and port only: never credentials
        server = {
            "host": f"{parts.hostname or 'localhost'}:{parts.port or 6379}",
            "protocol": "rediss" if parts.scheme == "rediss" else "redis",
        }
    server["description"] = "The Redis holding the invalidation stream (noeviction, AOF)."
    channel_ref = {"$ref": f"#/channels/{stream}"}
    message_ref = {"$ref": f"#/channels/{stream}/messages/{_MESSAGE}"}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "cachebus cache invalidations",
            "version": _version(),
            "description": (
                "Cache invalidation events over a Redis Stream. Delivery is at least once per "
                "consumer group (one group per service); duplicates are harmless; a consumer "
                "that cannot be sure it saw every event flushes its cache scope."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"redis": server},
        "channels": {
            stream: {
                "address": address,
                "title": f"invalidation stream {stream}",
                "description": (
                    f"Redis Stream {address}. Each entry has one field, {FIELD!r}, holding the "
                    'JSON envelope {"data": "<the event as a JSON string>", "headers": {...}} '
                    f"(schema version {SCHEMA_VERSION}). Read it with XREADGROUP, one consumer "
                    "group per service."
                ),
                "servers": [{"$ref": "#/servers/redis"}],
                "messages": {_MESSAGE: {"$ref": f"#/components/messages/{_MESSAGE}"}},
            }
        },
        "operations": {
            "publishInvalidation": {
                "action": "send",
                "channel": channel_ref,
                "summary": "A service that changed data says which cached data is stale.",
                "messages": [message_ref],
            },
            "consumeInvalidation": {
                "action": "receive",
                "channel": channel_ref,
                "summary": "Each service's consumer group deletes the stale entries it caches.",
                "messages": [message_ref],
            },
        },
        "components": {
            "messages": {
                _MESSAGE: {
                    "name": _MESSAGE,
                    "title": "Cache invalidation",
                    "contentType": CONTENT_TYPE,
                    "correlationId": {"location": "$message.header#/correlation_id"},
                    "headers": headers,
                    "payload": {"$ref": f"#/components/schemas/{_MESSAGE}"},
                }
            },
            "schemas": schemas,
        },
    }
