"""The rules an invalidation event obeys, written once.

The pydantic models in :mod:`cachebus.contracts.events` express these rules as field constraints
(so the committed JSON Schema carries them) plus a few validators; the producer's fast path calls
the functions below instead of building a model per event. Both raise :class:`ContractError` with
the same ``rule`` names, and a property test proves that they accept and refuse the same events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cachebus.contracts.errors import ContractError
from cachebus.contracts.names import (
    MAX_ID_LENGTH,
    MAX_PATTERN_LENGTH,
    validate_id,
    validate_name,
    validate_pattern,
)
from cachebus.contracts.registry import Registry

__all__ = [
    "ALWAYS_FITS",
    "EVENT_ID_PATTERN",
    "KEY_ID_PATTERN",
    "MAX_CREATED_AT_MS",
    "MAX_ENTRY_BYTES",
    "MAX_EVENT_ID_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_KEYS_PER_EVENT",
    "MAX_KEYS_TOTAL_CHARS",
    "MAX_PATTERN_LENGTH",
    "MAX_REASON_LENGTH",
    "NAME_PATTERN",
    "REASON_PATTERN",
    "check_event_id",
    "check_key_ids",
    "check_namespace",
    "check_pattern",
    "check_producer",
    "check_reason",
]

#: Most ids in one keys event; more keys go in several events (the producer splits them).
MAX_KEYS_PER_EVENT = 1000
#: Most characters of all ids of one keys event together.
MAX_KEYS_TOTAL_CHARS = 64 * 1024
#: Longest ``reason`` (characters).
MAX_REASON_LENGTH = 256
#: Longest ``event_id`` (ours are 26; other producers may send UUIDs and the like).
MAX_EVENT_ID_LENGTH = 64
#: Largest encoded stream entry the producer writes and the decoder reads (bytes).
MAX_ENTRY_BYTES = 1024 * 1024
#: ``created_at_ms`` must fit the 48 bits of an event id (year 10889).
MAX_CREATED_AT_MS = (1 << 48) - 1

#: Namespaces and producer names: the key registry's name syntax.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
EVENT_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.:\-]*$"
#: What :func:`cachebus.contracts.keys.validate_id` accepts, as a regular expression.
KEY_ID_PATTERN = r"^[^\x00\r\n]+$"
REASON_PATTERN = r"^[^\x00-\x1f\x7f]*$"

#: Up to this many ids, an event's ids cannot total more than MAX_KEYS_TOTAL_CHARS.
ALWAYS_FITS = MAX_KEYS_TOTAL_CHARS // MAX_ID_LENGTH
_EVENT_ID_RE = re.compile(EVENT_ID_PATTERN)
_REASON_BAD_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_namespace(namespace: str, registry: Registry | None) -> str:
    """A registered namespace (``registry=None``: syntax only, for readers of foreign streams)."""
    if registry is not None and namespace in registry:
        return namespace
    validate_name(namespace, "namespace")
    if registry is not None:
        registry.get(namespace)  # raises namespace.unknown, listing the known ones
    return namespace


def check_key_ids(ids: Iterable[str | int]) -> tuple[str, ...]:
    """Ids of one keys event: 1..MAX_KEYS_PER_EVENT valid ids, MAX_KEYS_TOTAL_CHARS in all."""
    if isinstance(ids, (str, bytes)):  # the tuple form is faster than a union here
        raise ContractError(
            "ids must be a list of ids, not a single string; wrap it: [id]", rule="keys.type"
        )
    if type(ids) is list and len(ids) == 1:  # the common call: one id
        only = ids[0]
        if (
            type(only) is str
            and 0 < len(only) <= MAX_ID_LENGTH
            and "\x00" not in only
            and "\r" not in only
            and "\n" not in only
        ):
            return (only,)
    given = ids if type(ids) is tuple else tuple(ids)
    out: tuple[str, ...] = given  # proven below, or rebuilt
    # Fast path with validate_id's rules (str, 1..MAX_ID_LENGTH, no NUL/CR/LF); anything else
    # goes through validate_id for its precise error, or to turn int ids into text.
    for i in given:
        if (
            type(i) is not str
            or not 0 < len(i) <= MAX_ID_LENGTH
            or "\x00" in i
            or "\r" in i
            or "\n" in i
        ):
            out = tuple(validate_id(i) for i in given)
            break
    if not out:
        raise ContractError(
            "a keys event needs at least one id; to drop a whole namespace use flush_namespace()",
            rule="keys.empty",
        )
    if len(out) > MAX_KEYS_PER_EVENT:
        raise ContractError(
            f"a keys event holds at most {MAX_KEYS_PER_EVENT} ids, got {len(out)}; "
            "split them over several events (Producer.batch().invalidate_keys() does it for you)",
            rule="keys.too_many",
        )
    if len(out) <= ALWAYS_FITS:
        return out
    total = sum(map(len, out))
    if total > MAX_KEYS_TOTAL_CHARS:
        raise ContractError(
            f"the ids of one event total {total} characters; the limit is "
            f"{MAX_KEYS_TOTAL_CHARS}: split them over several events",
            rule="keys.too_large",
        )
    return out


def check_pattern(namespace: str, pattern: str, registry: Registry | None = None) -> str:
    """A namespace-relative glob that names less than the whole namespace.

    Patterns are relative to their namespace (``42:*`` in ``positions``), so one that starts
    with the namespace's own name is an absolute pattern written out of habit
    (``positions:42:*``): it would match nothing, silently, and is refused. With a registry,
    the namespace must allow patterns (``patterns = true``, the default).
    """
    validate_pattern(pattern)
    if registry is not None and namespace in registry and not registry.get(namespace).patterns:
        raise ContractError(
            f"namespace {namespace!r} does not allow pattern invalidations (patterns = false "
            "in the registry): invalidate ids, or flush the namespace",
            rule="pattern.not_allowed",
        )
    if pattern.startswith(namespace + ":"):
        raise ContractError(
            f"pattern {pattern!r} starts with its namespace {namespace!r}; patterns are "
            f"relative to the namespace: use {pattern[len(namespace) + 1 :]!r}",
            rule="pattern.outside_namespace",
        )
    return pattern


def check_reason(reason: str) -> str:
    if not isinstance(reason, str):
        raise ContractError(
            f"reason must be a str, not {type(reason).__name__}", rule="reason.type"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise ContractError(
            f"reason is {len(reason)} characters long; the limit is {MAX_REASON_LENGTH}",
            rule="reason.too_long",
        )
    if _REASON_BAD_RE.search(reason):
        raise ContractError("reason must not contain control characters", rule="reason.invalid")
    return reason


def check_producer(name: str) -> str:
    """The producing service's name: the registry's name syntax (``api``, ``trading-bot``)."""
    return validate_name(name, "producer")


def check_event_id(event_id: str) -> str:
    if not isinstance(event_id, str) or not event_id:
        raise ContractError("event_id must be a non-empty string", rule="event_id.missing")
    if len(event_id) > MAX_EVENT_ID_LENGTH or not _EVENT_ID_RE.fullmatch(event_id):
        raise ContractError(
            f"event_id {event_id[:80]!r} is invalid: use 1-{MAX_EVENT_ID_LENGTH} letters, digits, "
            "'_', '.', ':' or '-', starting with a letter or digit",
            rule="event_id.invalid",
        )
    return event_id
