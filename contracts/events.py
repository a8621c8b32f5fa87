"""Invalidation events: versioned, frozen pydantic models, one per kind, and a tagged union.

Three kinds exist: :class:`KeysInvalidated` (ids of one namespace), :class:`PatternInvalidated`
(a namespace-relative glob) and :class:`NamespaceFlushed`. Every event carries
``schema_version``, a sortable ``event_id`` chosen when the event is built (a retry re-sends
it), its ``namespace``, a ``reason``, the ``producer`` service and ``created_at_ms``. Trace
context travels beside the event, in the envelope headers (see :mod:`cachebus.contracts.codec`),
where FastStream and OpenTelemetry propagators look for it.

Construction enforces :mod:`cachebus.contracts.rules` and raises :class:`ContractError` whose
``rule`` names the broken rule. The namespace is checked against the registry of an
:class:`EventFactory`, or the ``registry`` in the validation context; without one (a model
built directly, a decoder given no registry) only its syntax is checked: the library knows no
namespace of its own. Unknown fields are ignored, so events from newer producers of the same
``schema_version`` still read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cachebus.contracts.errors import ContractError, EventDecodeError
from cachebus.contracts.ids import new_event_id
from cachebus.contracts.registry import Registry
from cachebus.contracts.rules import (
    ALWAYS_FITS,
    EVENT_ID_PATTERN,
    KEY_ID_PATTERN,
    MAX_CREATED_AT_MS,
    MAX_EVENT_ID_LENGTH,
    MAX_ID_LENGTH,
    MAX_KEYS_PER_EVENT,
    MAX_KEYS_TOTAL_CHARS,
    MAX_PATTERN_LENGTH,
    MAX_REASON_LENGTH,
    NAME_PATTERN,
    REASON_PATTERN,
    check_namespace,
    check_pattern,
)

__all__ = [
    "EVENT_ADAPTER",
    "SCHEMA_VERSION",
    "EventKind",
    "InvalidationEvent",
    "KeysInvalidated",
    "NamespaceFlushed",
    "PatternInvalidated",
    "Event",
    "contract_error",
    "decode_error",
    "now_ms",
    "validate_event",
]

SCHEMA_VERSION = 1


class EventKind(StrEnum):
    KEYS = "keys"
    PATTERN = "pattern"
    FLUSH = "flush"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _registry(info: ValidationInfo) -> Registry | None:
    ctx = info.context
    # type() first: an ABC isinstance check costs a microsecond per decoded event.
    if (type(ctx) is dict or isinstance(ctx, Mapping)) and "registry" in ctx:
        registry: Registry | None = ctx["registry"]
        return registry
    return None


_Name = Annotated[str, StringConstraints(strict=True, pattern=NAME_PATTERN)]
_EventId = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=MAX_EVENT_ID_LENGTH, pattern=EVENT_ID_PATTERN
    ),
]
_Reason = Annotated[
    str, StringConstraints(strict=True, max_length=MAX_REASON_LENGTH, pattern=REASON_PATTERN)
]
_KeyId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_ID_LENGTH, pattern=KEY_ID_PATTERN),
]
_Pattern = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MAX_PATTERN_LENGTH)
]
_Millis = Annotated[int, Field(strict=True, ge=0, le=MAX_CREATED_AT_MS)]


class _Event(BaseModel):
    # The committed schema describes the wire, where every field is written.
    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_serialization_defaults_required=True
    )

    schema_version: Literal[1] = Field(
        1, description="Contract version; a reader refuses versions it does not know."
    )
    kind: str
    event_id: _EventId = Field(
        default_factory=new_event_id,
        description="Sortable unique id (ULID), chosen once: a retry re-sends the same id.",
    )
    namespace: _Name = Field(description="A namespace of the key registry.")
    reason: _Reason = Field("", description="Why, for people reading the stream.")
    producer: _Name = Field(description="The service that published the event.")
    created_at_ms: _Millis = Field(
        default_factory=now_ms, description="Unix time in ms when the event was built."
    )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise contract_error(exc) from None

    # pydantic routes validation through a custom __init__ unless it is marked as its own
    # (as RootModel does): keep model_validate on the fast path, translate only here.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # pydantic reads true as 1 for Literal[1], even in strict mode
        if isinstance(value, bool):
            raise ContractError(
                f"schema_version {value!r} is not supported", rule="schema_version.unsupported"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        ctx = info.context
        # Called per decoded event: the common cases (no registry, a registered name) without
        # a call to _registry(); the syntax is the field's pattern.
        if type(ctx) is dict:
            registry = ctx.get("registry")
            if registry is None or value in registry:
                return value
        registry = _registry(info)
        if registry is None or value in registry:
            return value
        return check_namespace(value, registry)


class KeysInvalidated(_Event):
    """These ids of ``namespace`` are stale (1 to MAX_KEYS_PER_EVENT namespace-relative ids)."""

    kind: Literal["keys"] = "keys"
    keys: Annotated[tuple[_KeyId, ...], Field(min_length=1, max_length=MAX_KEYS_PER_EVENT)] = Field(
        description="Namespace-relative ids; glob characters in them are literal."
    )

    @field_validator("keys")
    @classmethod
    def _total_size(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) <= ALWAYS_FITS:
            return value
        total = sum(map(len, value))
        if total > MAX_KEYS_TOTAL_CHARS:
            raise ContractError(
                f"the ids of one event total {total} characters; the limit is "
                f"{MAX_KEYS_TOTAL_CHARS}: split them over several events",
                rule="keys.too_large",
            )
        return value


class PatternInvalidated(_Event):
    """Every item of ``namespace`` whose id matches the glob ``pattern`` is stale."""

    kind: Literal["pattern"] = "pattern"
    pattern: _Pattern = Field(
        description="A Redis glob relative to the namespace; never one matching all of it."
    )

    @field_validator("pattern")
    @classmethod
    def _inside_namespace(cls, value: str, info: ValidationInfo) -> str:
        namespace = info.data.get("namespace")
        if namespace is None:  # the namespace itself was refused; that error is reported
            return value
        return check_pattern(namespace, value, _registry(info))


class NamespaceFlushed(_Event):
    """Everything cached in ``namespace`` is stale."""

    kind: Literal["flush"] = "flush"


#: Any event, for type hints; :data:`InvalidationEvent` is the same union, tagged by ``kind``.
Event = KeysInvalidated | PatternInvalidated | NamespaceFlushed

InvalidationEvent = Annotated[
    KeysInvalidated | PatternInvalidated | NamespaceFlushed, Field(discriminator="kind")
]

#: Validates any event (a dict from JSON) in one call; pass ``context={"registry": ...}``.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(InvalidationEvent)

_KINDS = frozenset(EventKind)

# pydantic error type -> the rule suffix; anything else keeps pydantic's own type name.
_SUFFIX = {
    "missing": "missing",
    "string_too_long": "too_long",
    "string_too_short": "empty",
    "string_pattern_mismatch": "invalid",
    "string_type": "type",
    "int_type": "type",
    "tuple_type": "type",
    "greater_than_equal": "range",
    "less_than_equal": "range",
    "literal_error": "unsupported",
}
_ID_RULES = {
    "string_too_long": "id.too_long",
    "string_too_short": "id.empty",
    "string_type": "id.type",
}


def _rule_of(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ContractError):
        return cause.rule
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return "kind.unknown" if kind == "union_tag_invalid" else "kind.missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "event.type"
    loc = [part for part in error["loc"] if isinstance(part, str)]
    tagged = bool(loc and loc[0] in _KINDS and len(loc) > 1)
    if tagged:
        loc = loc[1:]  # a discriminated union puts the tag first
    field = loc[0] if loc else "event"
    if field == "keys" and len(error["loc"]) - tagged > len(loc):
        # an item of keys: the same rules as cachebus.contracts.keys.validate_id
        return _ID_RULES.get(kind, "id.control_char" if "pattern" in kind else f"id.{kind}")
    if field == "keys" and kind in ("too_short", "too_long"):
        return "keys.empty" if kind == "too_short" else "keys.too_many"
    if field == "pattern" and kind == "string_too_short":
        return "pattern.empty"
    return f"{field}.{_SUFFIX.get(kind, kind)}"


def _describe(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors(include_url=False)
    rules = [_rule_of(e) for e in errors]
    if any(r.startswith("id.") for r in rules):
        # pydantic adds "keys: at least 1 item after validation" when an item fails: noise.
        keep = [i for i, r in enumerate(rules) if r != "keys.empty"]
        errors, rules = [errors[i] for i in keep], [rules[i] for i in keep]
    parts = []
    for error, rule in zip(errors[:5], rules, strict=False):
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']} [{rule}]")
    return "invalid event: " + "; ".join(parts), rules[0]


def contract_error(exc: ValidationError) -> ContractError:
    """Translate a pydantic error into ours; ``rule`` is the first broken rule."""
    message, rule = _describe(exc)
    return ContractError(message, rule=rule)


def decode_error(exc: ValidationError, entry_id: str | None = None) -> EventDecodeError:
    """Like :func:`contract_error`, for an event read from a stream entry."""
    message, rule = _describe(exc)
    where = f"entry {entry_id}: " if entry_id else ""
    return EventDecodeError(where + message, rule=rule, entry_id=entry_id)


def validate_event(data: Mapping[str, Any], *, registry: Registry | None = None) -> Event:
    """An event from a mapping (such as parsed JSON); raises :class:`ContractError`."""
    try:
        return EVENT_ADAPTER.validate_python(data, context={"registry": registry})
    except ValidationError as exc:
        raise contract_error(exc) from None
