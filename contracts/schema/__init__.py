"""The committed JSON Schema of the wire contract, for producers written in other languages.

``invalidation-event.v1.json`` describes the event (the JSON string inside the envelope's
``data``); ``envelope.v1.json`` the ``__data__`` field around it. Both are generated from the
models; ``python -m cachebus.contracts.schema`` rewrites them, and a test fails when the committed
files and the models disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cachebus.contracts.codec import CONTENT_TYPE, FIELD, FINGERPRINT_HEADER
from cachebus.contracts.events import EVENT_ADAPTER, SCHEMA_VERSION
from cachebus.contracts.registry import FINGERPRINT_LENGTH

__all__ = ["SCHEMA_DIR", "envelope_schema", "event_schema", "render", "schemas", "write"]

SCHEMA_DIR = Path(__file__).resolve().parent
_BASE = "https://cachebus.invalid/schema"


def event_schema() -> dict[str, Any]:
    schema = EVENT_ADAPTER.json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_BASE}/invalidation-event.v{SCHEMA_VERSION}.json",
        "title": "cachebus invalidation event",
        "description": (
            "One cache invalidation. Unknown properties must be ignored by readers; an unknown "
            "schema_version is an error. Ids and patterns are relative to the namespace."
        ),
        **schema,
    }


def envelope_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_BASE}/envelope.v{SCHEMA_VERSION}.json",
        "title": f"cachebus stream entry field {FIELD}",
        "description": (
            "FastStream-compatible JSON envelope. The stream entry has one field, "
            f"{FIELD!r}, whose value is this object serialized as JSON."
        ),
        "type": "object",
        "required": ["data", "headers"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": CONTENT_TYPE,
                "contentSchema": {"$ref": f"invalidation-event.v{SCHEMA_VERSION}.json"},
                "description": "The event, serialized as a JSON string (not a nested object).",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "properties": {
                    "content-type": {"const": CONTENT_TYPE},
                    "message_id": {"type": "string", "description": "the event_id"},
                    "correlation_id": {"type": "string", "description": "the event_id"},
                    "traceparent": {
                        "type": "string",
                        "description": "W3C trace context of the producer's send span",
                        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                    },
                    "tracestate": {"type": "string", "maxLength": 512},
                    FINGERPRINT_HEADER: {
                        "type": "string",
                        "description": (
                            "The producer's registry fingerprint of the event's namespace "
                            "(optional): a consumer whose own differs reports registry drift"
                        ),
                        "pattern": f"^[0-9a-f]{{{FINGERPRINT_LENGTH}}}$",
                    },
                },
            },
        },
    }


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, as generated from the models now."""
    return {
        f"invalidation-event.v{SCHEMA_VERSION}.json": event_schema(),
        f"envelope.v{SCHEMA_VERSION}.json": envelope_schema(),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, schema in schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
