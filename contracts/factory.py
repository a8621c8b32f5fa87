"""Building events: :class:`EventFactory` binds a producer name to a namespace registry.

Two outputs, same rules. The ``keys``/``pattern``/``flush`` methods return validated models.
The ``*_payload`` methods return the plain dict that goes on the wire (the same fields in the
same order as a model's), checked by :mod:`cachebus.contracts.rules` without building a model: the
producer's publish path uses them, because a pydantic instance costs more than the rest of
the publish work together. A property test proves both accept and refuse the same input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from cachebus.contracts.errors import ContractError
from cachebus.contracts.events import (
    EVENT_ADAPTER,
    Event,
    KeysInvalidated,
    NamespaceFlushed,
    PatternInvalidated,
    contract_error,
)
from cachebus.contracts.ids import next_event_id
from cachebus.contracts.names import KeyRef, PatternRef
from cachebus.contracts.registry import Registry
from cachebus.contracts.rules import (
    MAX_KEYS_PER_EVENT,
    MAX_KEYS_TOTAL_CHARS,
    check_key_ids,
    check_namespace,
    check_pattern,
    check_producer,
    check_reason,
)

__all__ = [
    "EventFactory",
    "Ref",
    "flush_namespace_event",
    "keys_invalidated",
    "pattern_invalidated",
    "split_ids",
]

#: What a service says it changed: items, a glob of items, or a ready event.
Ref = KeyRef | PatternRef | KeysInvalidated | PatternInvalidated | NamespaceFlushed
_REASONS_CAP = 1024
_E = TypeVar("_E", KeysInvalidated, PatternInvalidated, NamespaceFlushed)


def split_ids(ids: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Chunks of ``ids`` that each fit one keys event (by count and by total size)."""
    chunk: list[str] = []
    size = 0
    for i in ids:
        if chunk and (len(chunk) >= MAX_KEYS_PER_EVENT or size + len(i) > MAX_KEYS_TOTAL_CHARS):
            yield tuple(chunk)
            chunk, size = [], 0
        chunk.append(i)
        size += len(i)
    if chunk:
        yield tuple(chunk)


def _id_text(ids: Iterable[str | int]) -> tuple[Any, ...]:
    if isinstance(ids, str | bytes):
        raise ContractError(
            "ids must be a list of ids, not a single string; wrap it: [id]", rule="keys.type"
        )
    return tuple(str(i) if type(i) is int else i for i in ids)


@dataclass(frozen=True, slots=True)
class EventFactory:
    """Builds the events of one producing service, checked against one registry."""

    producer: str
    registry: Registry
    # Registered namespaces, and reasons already checked: one lookup on the publish path.
    _namespaces: frozenset[str] = field(init=False, repr=False, compare=False)
    _reasons: dict[str, None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_producer(self.producer)
        object.__setattr__(self, "_namespaces", frozenset(self.registry.names))
        object.__setattr__(self, "_reasons", {"": None})

    # ---- validated models --------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> Event:
        """Any event from a mapping, checked against this factory's registry."""
        try:
            return EVENT_ADAPTER.validate_python(data, context={"registry": self.registry})
        except ValidationError as exc:
            raise contract_error(exc) from None

    def _build(self, model: type[_E], data: dict[str, Any]) -> _E:
        data["producer"] = self.producer
        try:
            return model.model_validate(data, context={"registry": self.registry})
        except ValidationError as exc:
            raise contract_error(exc) from None

    def keys_event(
        self, namespace: str, ids: Iterable[str | int], *, reason: str = ""
    ) -> KeysInvalidated:
        """Ids of one namespace are stale (int ids become text).

        Named ``keys_event``, not ``keys``: a method called ``keys`` reads like the Redis
        command cachebus never sends."""
        data = {"namespace": namespace, "keys": _id_text(ids), "reason": reason}
        return self._build(KeysInvalidated, data)

    def pattern(self, namespace: str, pattern: str, *, reason: str = "") -> PatternInvalidated:
        """Ids of one namespace matching a namespace-relative glob are stale."""
        data = {"namespace": namespace, "pattern": pattern, "reason": reason}
        return self._build(PatternInvalidated, data)

    def flush(self, namespace: str, *, reason: str = "") -> NamespaceFlushed:
        """Everything cached in one namespace is stale."""
        return self._build(NamespaceFlushed, {"namespace": namespace, "reason": reason})

    def events_for(self, refs: Iterable[Ref], *, reason: str = "") -> list[Event]:
        """Events covering ``refs``: ids grouped per namespace (deduplicated, split to fit)."""
        by_namespace: dict[str, dict[str, None]] = {}
        out: list[Event] = []
        for ref in refs:
            if isinstance(ref, KeyRef):
                by_namespace.setdefault(ref.namespace, {})[ref.id] = None
            elif isinstance(ref, PatternRef):
                out.append(self.pattern(ref.namespace, ref.pattern, reason=reason))
            elif isinstance(ref, KeysInvalidated | PatternInvalidated | NamespaceFlushed):
                out.append(ref)
            else:
                raise ContractError(
                    f"cannot invalidate {ref!r}: give KeyRef, PatternRef or an event "
                    "(build them with registry[namespace].ref(...) / .prefix(...))",
                    rule="ref.type",
                )
        for namespace, ids in by_namespace.items():
            out.extend(self.keys_event(namespace, chunk, reason=reason) for chunk in split_ids(ids))
        return out

    # ---- wire payloads (the publish fast path) -----------------------------------------
    def _check_head(self, namespace: str, reason: str) -> None:
        if type(namespace) is not str or namespace not in self._namespaces:
            check_namespace(namespace, self.registry)
        if type(reason) is not str or reason not in self._reasons:
            check_reason(reason)
            if len(self._reasons) < _REASONS_CAP:  # services use a handful of constant reasons
                self._reasons[reason] = None

    def _head(self, kind: str, namespace: str, reason: str) -> dict[str, Any]:
        self._check_head(namespace, reason)
        event_id, created_at_ms = next_event_id()
        return {
            "schema_version": 1,
            "kind": kind,
            "event_id": event_id,
            "namespace": namespace,
            "reason": reason,
            "producer": self.producer,
            "created_at_ms": created_at_ms,
        }

    def keys_payload(
        self, namespace: str, ids: Iterable[str | int], reason: str = ""
    ) -> dict[str, Any]:
        """The wire dict of a :class:`KeysInvalidated` (same rules, no model built)."""
        # _head written out: this is the hottest line of a batched publish.
        if (
            type(namespace) is not str
            or namespace not in self._namespaces
            or type(reason) is not str
            or reason not in self._reasons
        ):
            self._check_head(namespace, reason)
        keys = check_key_ids(ids)
        event_id, created_at_ms = next_event_id()
        return {
            "schema_version": 1,
            "kind": "keys",
            "event_id": event_id,
            "namespace": namespace,
            "reason": reason,
            "producer": self.producer,
            "created_at_ms": created_at_ms,
            "keys": keys,
        }

    def pattern_payload(self, namespace: str, pattern: str, reason: str = "") -> dict[str, Any]:
        payload = self._head("pattern", namespace, reason)
        payload["pattern"] = check_pattern(namespace, pattern, self.registry)
        return payload

    def flush_payload(self, namespace: str, reason: str = "") -> dict[str, Any]:
        return self._head("flush", namespace, reason)


def keys_invalidated(
    namespace: str,
    ids: Iterable[str | int],
    *,
    producer: str,
    reason: str = "",
    registry: Registry,
) -> KeysInvalidated:
    return EventFactory(producer, registry).keys_event(namespace, ids, reason=reason)


def pattern_invalidated(
    namespace: str,
    pattern: str,
    *,
    producer: str,
    reason: str = "",
    registry: Registry,
) -> PatternInvalidated:
    return EventFactory(producer, registry).pattern(namespace, pattern, reason=reason)


def flush_namespace_event(
    namespace: str,
    *,
    producer: str,
    reason: str = "",
    registry: Registry,
) -> NamespaceFlushed:
    return EventFactory(producer, registry).flush(namespace, reason=reason)
