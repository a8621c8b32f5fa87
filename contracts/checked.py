"""The decoder's fast path: an event dict checked by hand, the model built without pydantic.

A consumer validates every event it reads; run through pydantic, that is about a third of
what an event costs end to end. Most events are ordinary (a keys or flush event written by
our producer), so :func:`checked_event` tests such a dict against the rules of
:mod:`cachebus.contracts.events` (the constants and patterns of
:mod:`cachebus.contracts.rules`) with a few string and type tests, and builds the model
directly.

It only ever *accepts*: a dict that passes every check is valid, and the model built equals
the one pydantic builds (same values, same ``model_fields_set``). Anything else (a pattern
event, a missing field, an unusual type, a namespace outside the registry, a rule broken)
gives None, and the caller validates the dict with pydantic, which accepts it or names the
broken rule. So the two paths cannot disagree on a refusal; the property tests in
``tests/unit/test_wire.py`` check that they agree on every acceptance.
"""

from __future__ import annotations

import re
from typing import Any

from cachebus.contracts.events import Event, KeysInvalidated, NamespaceFlushed
from cachebus.contracts.names import MAX_ID_LENGTH
from cachebus.contracts.registry import Registry
from cachebus.contracts.rules import (
    EVENT_ID_PATTERN,
    MAX_CREATED_AT_MS,
    MAX_EVENT_ID_LENGTH,
    MAX_KEYS_PER_EVENT,
    MAX_KEYS_TOTAL_CHARS,
    MAX_REASON_LENGTH,
    NAME_PATTERN,
    REASON_PATTERN,
)

__all__ = ["checked_event"]

# fullmatch, as pydantic-core's regex engine reads these patterns: "$" is the end of the text
# (Python's re.match would let "items\n" through).
_NAME_RE = re.compile(NAME_PATTERN)
_EVENT_ID_RE = re.compile(EVENT_ID_PATTERN)
_REASON_RE = re.compile(REASON_PATTERN)
_ALWAYS_FITS = MAX_KEYS_TOTAL_CHARS // MAX_ID_LENGTH
# Namespaces and producers are few and repeat on every event: a name proven once is looked
# up afterwards. Bounded, so a stream of ever-new names cannot grow it without limit.
_GOOD_NAMES: set[str] = set()
_MAX_GOOD_NAMES = 4096
_KEYS_FIELDS = frozenset(KeysInvalidated.model_fields)
_FLUSH_FIELDS = frozenset(NamespaceFlushed.model_fields)
_set = object.__setattr__


def _good_name(value: str) -> bool:
    if not _NAME_RE.fullmatch(value):
        return False
    if len(_GOOD_NAMES) < _MAX_GOOD_NAMES:
        _GOOD_NAMES.add(value)
    return True


def _good_reason(value: object) -> bool:
    if value == "":
        return True
    if type(value) is not str or len(value) > MAX_REASON_LENGTH:
        return False
    # Printable ASCII has no control character; anything else goes through the pattern.
    return (value.isascii() and value.isprintable()) or _REASON_RE.fullmatch(value) is not None


def _good_keys(keys: object) -> bool:
    if type(keys) is not list or not 0 < len(keys) <= MAX_KEYS_PER_EVENT:
        return False
    for ident in keys:
        if (
            type(ident) is not str
            or not 0 < len(ident) <= MAX_ID_LENGTH
            or "\x00" in ident
            or "\r" in ident
            or "\n" in ident
        ):
            return False
    return len(keys) <= _ALWAYS_FITS or sum(map(len, keys)) <= MAX_KEYS_TOTAL_CHARS


def checked_event(obj: dict[str, Any], registry: Registry | None) -> Event | None:
    """The event of ``obj`` (parsed JSON) if it is an ordinary valid keys or flush event with
    every field written; None means "ask pydantic", never "invalid"."""
    # The common case of each test is written inline: a call per field per event would cost
    # as much as the tests themselves.
    get = obj.get
    kind = get("kind")
    if kind == "keys":
        cls: type[Event] = KeysInvalidated
        fields = _KEYS_FIELDS
        keys = get("keys")
        if type(keys) is list and len(keys) == 1:
            only = keys[0]
            if not (
                type(only) is str
                and 0 < len(only) <= MAX_ID_LENGTH
                and "\x00" not in only
                and "\r" not in only
                and "\n" not in only
            ):
                return None
        elif not _good_keys(keys):
            return None
    elif kind == "flush":
        cls, fields = NamespaceFlushed, _FLUSH_FIELDS
    else:
        return None
    version = get("schema_version")
    event_id = get("event_id")
    namespace = get("namespace")
    producer = get("producer")
    created = get("created_at_ms")
    reason = get("reason")
    if (
        type(version) is not int
        or version != 1
        or type(created) is not int
        or not 0 <= created <= MAX_CREATED_AT_MS
        or type(event_id) is not str
        or not (
            0 < len(event_id) <= MAX_EVENT_ID_LENGTH
            # Ours are ULIDs: ASCII letters and digits, which the pattern accepts.
            and ((event_id.isascii() and event_id.isalnum()) or _EVENT_ID_RE.fullmatch(event_id))
        )
        or type(namespace) is not str
        or (namespace not in _GOOD_NAMES and not _good_name(namespace))
        or type(producer) is not str
        or (producer not in _GOOD_NAMES and not _good_name(producer))
        or (reason != "" and not _good_reason(reason))
        or (registry is not None and namespace not in registry)
    ):
        return None
    # In the models' field order: encoders write an event's __dict__ as it stands.
    values = {
        "schema_version": 1,
        "kind": kind,
        "event_id": event_id,
        "namespace": namespace,
        "reason": reason,
        "producer": producer,
        "created_at_ms": created,
    }
    if cls is KeysInvalidated:
        values["keys"] = tuple(keys)  # type: ignore[arg-type]
    # What BaseModel.model_construct does at its end, without its per-field Python loop
    # (which costs as much as validating): every value is proven valid above.
    event = cls.__new__(cls)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(fields))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
