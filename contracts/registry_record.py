"""Who runs which registry: a hash beside the stream, written once per process, read by ops.

``StreamKeys.registry_record(stream)`` holds, per participant, the registry it loaded::

    producer:<name>             {"version": ..., "fingerprint": ..., "namespaces": {ns: fp},
                                 "at_ms": ...}
    member:<group>/<consumer>   the same, for a consumer group's member
    def:<fingerprint>           the namespace definition behind a fingerprint

A producer writes its entry with its first publish (in the same round trip), a consumer
member when it starts: never per event. ``cachebus status`` shows the entries side by side,
and a consumer that meets another fingerprint in an event reads ``def:<fingerprint>`` to say
what differs (:func:`describe_difference`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cachebus.contracts.registry import Namespace, Registry

__all__ = [
    "ParticipantRecord",
    "describe_difference",
    "member_field",
    "parse_records",
    "producer_field",
    "record_fields",
]


def producer_field(name: str) -> str:
    return f"producer:{name}"


def member_field(group: str, consumer: str) -> str:
    return f"member:{group}/{consumer}"


def record_fields(registry: Registry, participant: str) -> dict[str, bytes]:
    """The HSET fields recording ``registry`` for ``participant`` (a ``*_field`` name)."""
    summary = {**registry.summary(), "at_ms": int(time.time() * 1000)}
    fields = {participant: orjson.dumps(summary)}
    for ns in registry:
        fields[f"def:{ns.fingerprint}"] = orjson.dumps({"name": ns.name, **ns.definition()})
    return fields


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """One producer's or member's registry, as recorded."""

    role: str  # "producer" or "member"
    name: str  # the producer name, or "<group>/<consumer>"
    version: str
    fingerprint: str
    namespaces: Mapping[str, str]
    at_ms: int


def parse_records(
    raw: Mapping[Any, Any],
) -> tuple[list[ParticipantRecord], dict[str, dict[str, Any]]]:
    """``(participants, definitions by fingerprint)`` from the hash; odd fields are skipped."""
    participants: list[ParticipantRecord] = []
    definitions: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        field = key.decode() if isinstance(key, bytes) else str(key)
        role, _, name = field.partition(":")
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        if role == "def":
            definitions[name] = data
        elif role in ("producer", "member"):
            namespaces = data.get("namespaces")
            participants.append(
                ParticipantRecord(
                    role,
                    name,
                    str(data.get("version", "")),
                    str(data.get("fingerprint", "")),
                    {str(k): str(v) for k, v in namespaces.items()}
                    if isinstance(namespaces, dict)
                    else {},
                    int(data.get("at_ms", 0) or 0),
                )
            )
    participants.sort(key=lambda p: (p.role != "producer", p.name))
    return participants, definitions


def describe_difference(ours: Namespace, theirs: Mapping[str, Any] | None) -> str:
    """What differs between our definition and another's (``theirs`` None: not recorded)."""
    if theirs is None:
        return "their definition is not recorded beside the stream"
    mine = ours.definition()
    changes = [
        f"{name} {theirs.get(name)!r} (ours {mine[name]!r})"
        for name in mine
        if theirs.get(name) != mine[name]
    ]
    return "theirs has " + ", ".join(changes) if changes else "same definition"
