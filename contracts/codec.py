"""The wire format of a stream entry, shared by producer and consumer.

An entry has one field, ``__data__``, holding FastStream's JSON envelope::

    {"data": "<the event as a JSON string>", "headers": {"content-type": "application/json",
     "message_id": <event_id>, "correlation_id": <event_id>, "traceparent": ..., ...}}

FastStream subscribers read it as a typed message with its headers (trace context included),
and ``redis-cli XRANGE`` shows it as readable JSON. :func:`decode_fields` also reads what
FastStream itself publishes (its binary frame, ``BinaryMessageFormatV1``), a bare JSON event in
``__data__``, and an event written as plain fields (``XADD s * kind flush namespace market
...``; ``keys`` as a JSON array; ``traceparent``/``tracestate`` fields become headers).

Decoding raises :class:`EventDecodeError` and nothing else, whatever the bytes: the consumer
sends such entries to the dead-letter stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple

import orjson
from pydantic import Field, Json, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from cachebus.contracts._compiled import compiled_validator
from cachebus.contracts._frames import (
    BINARY_MAGIC,
    FrameError,
    build_binary_frame,
    parse_binary_frame,
)
from cachebus.contracts.errors import ContractError, EventDecodeError
from cachebus.contracts.events import (
    EVENT_ADAPTER,
    Event,
    InvalidationEvent,
    KeysInvalidated,
    NamespaceFlushed,
    PatternInvalidated,
    decode_error,
)
from cachebus.contracts.registry import Registry
from cachebus.contracts.rules import MAX_ENTRY_BYTES

__all__ = [
    "CONTENT_TYPE",
    "FIELD",
    "FINGERPRINT_HEADER",
    "DecodedEntry",
    "build_binary_frame",
    "decode_entries",
    "decode_fields",
    "encode_event",
    "encode_headers",
    "encode_payload",
    "encode_payloads",
    "fingerprint_headers",
]

FIELD = "__data__"
CONTENT_TYPE = "application/json"
#: Envelope header holding the producer's registry fingerprint of the event's namespace
#: (:attr:`cachebus.contracts.registry.Namespace.fingerprint`): consumers compare it with their
#: own to detect registry drift. Optional: events without it (other producers) are not judged.
FINGERPRINT_HEADER = "cachebus-fingerprint"
_FIELD_B = FIELD.encode()
_ENVELOPE = (
    b'{"data":%b,"headers":{"content-type":"' + CONTENT_TYPE.encode()
    + b'","message_id":%b,"correlation_id":%b%b}}'
)  # fmt: skip
_MAX_HEADERS = 64
_TRACEPARENT_RE = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
_TRACESTATE_RE = re.compile(r"[\x20-\x2b\x2d-\x7e]*(?:,[\x20-\x2b\x2d-\x7e]*){0,31}")
_INT_FIELDS = ("schema_version", "created_at_ms")
_TRACE_FIELDS = ("traceparent", "tracestate")
# Fields a stream entry must carry itself: their defaults would invent a version, id or time.
_REQUIRED = frozenset({"schema_version", "event_id", "created_at_ms"})
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class DecodedEntry(NamedTuple):
    """One decoded stream entry: the event and its envelope headers (untrusted strings).

    A named tuple, not a dataclass: a consumer builds one per event on its hot path.
    """

    event: Event
    headers: Mapping[str, str] = _NO_HEADERS
    entry_id: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """The producer's registry fingerprint of the namespace, if it sent one."""
        return self.headers.get(FINGERPRINT_HEADER)

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` header if it is well formed, else None."""
        value = self.headers.get("traceparent")
        return value if value is not None and _TRACEPARENT_RE.fullmatch(value) else None

    @property
    def tracestate(self) -> str | None:
        """``tracestate`` if well formed (and only with a valid ``traceparent``), else None."""
        value = self.headers.get("tracestate")
        if value is None or self.traceparent is None or len(value) > 512:
            return None
        return value if _TRACESTATE_RE.fullmatch(value) else None

    def trace_carrier(self) -> dict[str, str]:
        """Validated trace headers, ready for ``opentelemetry.propagate.extract``."""
        carrier: dict[str, str] = {}
        if (parent := self.traceparent) is not None:
            carrier["traceparent"] = parent
            if (state := self.tracestate) is not None:
                carrier["tracestate"] = state
        return carrier


# A named tuple's own constructor is a Python function: the batch decoder builds the tuple
# directly (every field given), one frame less per event.
_new_decoded = partial(tuple.__new__, DecodedEntry)


# ---- encoding ------------------------------------------------------------------------------
def encode_headers(headers: Mapping[str, str] | None) -> bytes:
    """Extra envelope headers, serialized once for any number of entries."""
    if not headers:
        return b""
    for name, value in headers.items():
        if type(name) is not str or type(value) is not str:
            raise ContractError(
                f"envelope header {name!r} must map text to text", rule="headers.type"
            )
    return b"," + orjson.dumps(dict(headers))[1:-1]


def _envelope(payload: Mapping[str, Any], extra: bytes) -> bytes:
    # The envelope is written as a template around two orjson calls (the event, then the
    # event as a JSON string): the same bytes as dumping a dict, in half the time. Extra
    # headers come last, so they win over ours in any JSON reader (last key wins).
    event_id = orjson.dumps(payload["event_id"])
    blob = _ENVELOPE % (orjson.dumps(orjson.dumps(payload).decode()), event_id, event_id, extra)
    if len(blob) > MAX_ENTRY_BYTES:
        raise ContractError(
            f"the encoded event is {len(blob)} bytes; the limit is {MAX_ENTRY_BYTES}",
            rule="event.too_large",
        )
    return blob


def encode_payload(payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> bytes:
    """The ``__data__`` value for a validated payload (a model's fields, in order)."""
    return _envelope(payload, encode_headers(headers))


def fingerprint_headers(registry: Registry) -> dict[str, bytes]:
    """Namespace -> its fingerprint header, serialized once for :func:`encode_payloads`."""
    return {
        ns.name: b',"' + FINGERPRINT_HEADER.encode() + b'":"' + ns.fingerprint.encode() + b'"'
        for ns in registry
    }


def encode_payloads(
    payloads: Iterable[Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
    fingerprints: Mapping[str, bytes] | None = None,
) -> list[bytes]:
    """``__data__`` values for many payloads sharing the same extra headers; ``fingerprints``
    (from :func:`fingerprint_headers`) adds each namespace's registry fingerprint."""
    extra = encode_headers(headers)
    if not fingerprints:
        return [_envelope(p, extra) for p in payloads]
    return [_envelope(p, extra + fingerprints.get(p["namespace"], b"")) for p in payloads]


def encode_event(event: Event, headers: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """The XADD fields of ``event``; ``headers`` (such as ``traceparent``) go in the envelope."""
    return {FIELD: encode_payload(event.__dict__, headers)}


# ---- decoding ------------------------------------------------------------------------------
def _fail(message: str, rule: str, entry_id: str | None) -> EventDecodeError:
    where = f"entry {entry_id}: " if entry_id else ""
    return EventDecodeError(where + message, rule=rule, entry_id=entry_id)


def _text_headers(raw: Any) -> dict[str, str]:
    # Headers are advisory: odd ones are dropped rather than failing a valid invalidation.
    # Keys from JSON are always text; the entry as a whole is already size-bounded.
    if type(raw) is not dict:
        return {}
    if len(raw) <= _MAX_HEADERS:
        for value in raw.values():  # a plain loop: all() with a generator costs 3x here
            if type(value) is not str:
                break
        else:
            return raw
    return {k: v for k, v in list(raw.items())[:_MAX_HEADERS] if type(v) is str}


def _unwrap(raw: bytes, entry_id: str | None) -> tuple[Any, dict[str, str]]:
    """The event object (parsed JSON) and headers held by a ``__data__`` value."""
    if len(raw) > MAX_ENTRY_BYTES:
        raise _fail(
            f"entry is {len(raw)} bytes; the limit is {MAX_ENTRY_BYTES}",
            "entry.too_large",
            entry_id,
        )
    headers: dict[str, str] = {}
    if raw[:8] == BINARY_MAGIC:
        try:
            body, headers = parse_binary_frame(raw)
        except FrameError as exc:
            raise _fail(str(exc), exc.rule, entry_id) from None
        raw = body
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"event is not JSON: {exc}", "json.invalid", entry_id) from None
    data = obj.get("data") if isinstance(obj, dict) else None
    if data is not None and "headers" not in obj and "schema_version" not in obj:
        # Half an envelope (a hand-made one, another library's): judging its "data" as an
        # event would only report a missing schema_version.
        raise _fail(
            'not a cachebus envelope: it has "data" but no "headers" (expected {"data": '
            '"<event JSON>", "headers": {...}}, or the event itself)',
            "envelope.headers_missing",
            entry_id,
        )
    if isinstance(data, str) and "headers" in obj and not headers:
        # FastStream's JSON envelope: "data" is the event as a JSON string.
        headers = _text_headers(obj["headers"])
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _fail(f"envelope data is not JSON: {exc}", "json.invalid", entry_id) from None
    return obj, headers


def _from_plain_fields(
    fields: Mapping[str, str], entry_id: str | None
) -> tuple[Any, dict[str, str]]:
    obj: dict[str, Any] = dict(fields)
    headers = {name: obj.pop(name) for name in _TRACE_FIELDS if name in obj}
    for name in _INT_FIELDS:
        value = obj.get(name)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            obj[name] = int(value)
    keys = obj.get("keys")
    if isinstance(keys, str):
        try:
            obj["keys"] = orjson.loads(keys)
        except orjson.JSONDecodeError:
            raise _fail(
                'plain field "keys" must be a JSON array of ids', "keys.type", entry_id
            ) from None
    return obj, headers


def _text_fields(fields: Mapping[bytes | str, bytes | str], entry_id: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for k, v in fields.items():
            out[k.decode() if isinstance(k, bytes) else str(k)] = (
                v.decode() if isinstance(v, bytes) else str(v)
            )
    except UnicodeDecodeError:
        raise _fail("plain fields are not UTF-8", "fields.encoding", entry_id) from None
    return out


def _prepare(
    fields: Mapping[bytes | str, bytes | str] | None, entry_id: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse an entry down to the event dict, checking what pydantic cannot name well."""
    if type(fields) is not dict and not isinstance(fields, Mapping):
        if fields is None:  # XREADGROUP/XAUTOCLAIM give nil fields for a deleted pending entry
            raise _fail("entry was deleted or trimmed while pending", "entry.deleted", entry_id)
        raise _fail("entry fields must be a mapping", "fields.type", entry_id)
    raw = fields.get(_FIELD_B)
    if raw is None:
        raw = fields.get(FIELD)
    if raw is None:
        if not fields:
            raise _fail(f"entry has no fields (expected {FIELD!r})", "fields.missing", entry_id)
        obj, headers = _from_plain_fields(_text_fields(fields, entry_id), entry_id)
    elif isinstance(raw, bytes):
        obj, headers = _unwrap(raw, entry_id)
    elif isinstance(raw, str):  # a client with decode_responses=True
        obj, headers = _unwrap(raw.encode(), entry_id)
    else:
        raise _fail(f"{FIELD} must be bytes or text", "fields.type", entry_id)
    if not isinstance(obj, dict):
        raise _fail(
            f"event must be a JSON object, not {type(obj).__name__}", "event.type", entry_id
        )
    version = obj.get("schema_version")
    if type(version) is not int or version != 1:
        rule = "schema_version.missing" if version is None else "schema_version.unsupported"
        raise _fail(
            f"schema_version {version!r} is not supported (this reader knows 1)", rule, entry_id
        )
    for name in ("event_id", "created_at_ms"):
        if name not in obj:  # a default would invent a new id or time on every delivery
            raise _fail(f"event has no {name}", f"{name}.missing", entry_id)
    return obj, headers


def _entry_id(entry_id: str | bytes | None) -> str | None:
    return entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id


def decode_fields(
    fields: Mapping[bytes | str, bytes | str] | None,
    *,
    entry_id: str | bytes | None = None,
    registry: Registry | None = None,
) -> DecodedEntry:
    """Decode one entry's fields. ``registry=None`` checks the namespace's syntax only.

    ``fields`` is None for a pending entry deleted from the stream (rule ``entry.deleted``).
    """
    eid = _entry_id(entry_id)
    obj, headers = _prepare(fields, eid)
    try:
        event = EVENT_ADAPTER.validate_python(obj, context={"registry": registry})
    except ValidationError as exc:
        raise decode_error(exc, eid) from None
    except (ContractError, RecursionError, TypeError, ValueError) as exc:
        raise _fail(f"event could not be validated: {exc}", "event.invalid", eid) from None
    return DecodedEntry(event, headers, eid)


class _WireEnvelope(TypedDict):
    """Our envelope as the batch fast path validates it: the inner event parsed and validated
    in the same pydantic-core pass (``Json``), the headers checked there too."""

    data: Json[InvalidationEvent]
    headers: Annotated[dict[str, str], Field(max_length=_MAX_HEADERS)]


_ENVELOPE_BATCH: TypeAdapter[list[_WireEnvelope]] = TypeAdapter(list[_WireEnvelope])
#: The same without Python field validators and with the fields an entry must carry required,
#: for batches decoded without a registry (see cachebus.contracts._compiled).
_ENVELOPE_BATCH_COMPILED = compiled_validator(
    _ENVELOPE_BATCH, (KeysInvalidated, PatternInvalidated, NamespaceFlushed), _REQUIRED
)


def _decode_batch_fast(
    entries: Sequence[Sequence[Any]], registry: Registry | None
) -> list[DecodedEntry | EventDecodeError] | None:
    """Every entry in our JSON envelope and valid: one pydantic call parses and validates all.

    ``entries``: ``(entry id, fields, ...)`` tuples. None as soon as anything is unusual; the
    caller then decodes entry by entry, which gives each bad entry its precise error (and
    tolerates odd headers).
    """
    try:
        raws = [entry[1].get(_FIELD_B) for entry in entries]
        # A missing field, text or None makes join() raise; a binary frame (its magic is no
        # JSON) or an entry holding two JSON values, or none, breaks the array or changes the
        # count, and the batch is redone entry by entry.
        joined = b"[" + b",".join(raws) + b"]"
        if max(map(len, raws)) > MAX_ENTRY_BYTES:
            return None
        if registry is None:
            envelopes = _ENVELOPE_BATCH_COMPILED.validate_json(joined)
        else:
            envelopes = _ENVELOPE_BATCH.validate_json(joined, context={"registry": registry})
    except (ValidationError, ContractError, RecursionError, TypeError, ValueError):
        return None
    except AttributeError:  # fields that are not a dict (None: a deleted pending entry)
        return None
    if len(envelopes) != len(raws):
        return None
    if registry is not None:  # the compiled validator requires these fields itself
        for envelope in envelopes:
            # model_fields_set is a property (a Python frame per event); this is what it is.
            if not envelope["data"].__pydantic_fields_set__ >= _REQUIRED:
                return None  # a default was used: a field is missing from the entry
    out: list[DecodedEntry | EventDecodeError] = []
    append = out.append
    for envelope, entry in zip(envelopes, entries, strict=True):
        entry_id = entry[0]
        eid = entry_id if type(entry_id) is str else _entry_id(entry_id)
        append(_new_decoded((envelope["data"], envelope["headers"], eid)))
    return out


def _decode_one(
    entry_id: str | bytes,
    fields: Mapping[bytes | str, bytes | str] | None,
    registry: Registry | None,
) -> DecodedEntry | EventDecodeError:
    try:
        return decode_fields(fields, entry_id=entry_id, registry=registry)
    except EventDecodeError as exc:
        return exc


def decode_entries(
    entries: Iterable[Sequence[Any]],
    *,
    registry: Registry | None = None,
) -> list[DecodedEntry | EventDecodeError]:
    """Decode a batch (as XREADGROUP returns it): one result per entry, errors in place.

    ``entries``: ``(entry id, fields)`` pairs, or any tuples that start so (a consumer's
    :class:`~cachebus.consumers.entries.Entry`).

    A batch of well-formed envelopes is parsed and validated in one pydantic call, several
    times faster per event than :func:`decode_fields` in a loop; any other batch (a bad
    entry, a FastStream binary frame, plain fields) is decoded entry by entry.
    """
    batch = entries if isinstance(entries, list) else list(entries)
    fast = _decode_batch_fast(batch, registry) if batch else []
    if fast is not None:
        return fast
    return [_decode_one(entry[0], entry[1], registry) for entry in batch]
