"""The wire format: round trips, every accepted form, and decode errors on hostile input."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachebus.contracts import EventFactory, codec, decode_entries, decode_fields
from cachebus.contracts._compiled import compiled_schema, python_callbacks
from cachebus.contracts._frames import BINARY_MAGIC, build_binary_frame
from cachebus.contracts.codec import FIELD, DecodedEntry, encode_event
from cachebus.contracts.errors import ContractError, EventDecodeError
from cachebus.contracts.events import Event
from cachebus.contracts.keys import MAX_ID_LENGTH
from cachebus.contracts.rules import ALWAYS_FITS
from tests.harness.registry import REGISTRY

FACTORY = EventFactory("api", registry=REGISTRY)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# ---- strategies ------------------------------------------------------------------------
key_ids = st.text(
    alphabet=st.characters(blacklist_characters="\x00\r\n", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
literal = st.text(alphabet="abcXYZ019:_-", min_size=1, max_size=8)
patterns = st.builds(lambda a, b: f"{a}*{b}", literal, st.text(alphabet="ab:?", max_size=4))
reasons = st.text(
    alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), max_size=40
).filter(lambda r: "\x7f" not in r)
namespaces = st.sampled_from(REGISTRY.names)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(["keys", "pattern", "flush"]))
    namespace = draw(namespaces)
    reason = draw(reasons)
    if kind == "keys":
        return FACTORY.keys_event(
            namespace, draw(st.lists(key_ids, min_size=1, max_size=5)), reason=reason
        )
    if kind == "pattern":
        pattern = draw(patterns.filter(lambda p: not p.startswith(namespace + ":")))
        return FACTORY.pattern(namespace, pattern, reason=reason)
    return FACTORY.flush(namespace, reason=reason)


headers = st.dictionaries(
    st.text(alphabet="abcdefghij-_", min_size=1, max_size=10).filter(
        lambda k: k not in ("content-type", "message_id", "correlation_id")
    ),
    st.text(max_size=30),
    max_size=4,
)


# ---- round trips -------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(event=events(), extra=headers)
def test_encode_then_decode_gives_back_the_event_and_headers(
    event: Event, extra: dict[str, str]
) -> None:
    fields = encode_event(event, extra)
    assert list(fields) == [FIELD]
    decoded = decode_fields(fields, entry_id="5-0", registry=REGISTRY)
    assert decoded.event == event
    assert type(decoded.event) is type(event)
    assert {k: decoded.headers[k] for k in extra} == extra
    assert decoded.headers["message_id"] == event.event_id
    assert decoded.entry_id == "5-0"


@settings(max_examples=100, deadline=None)
@given(event=events(), extra=headers)
def test_a_fastream_binary_frame_round_trips(event: Event, extra: dict[str, str]) -> None:
    frame = build_binary_frame(event.model_dump_json().encode(), extra)
    decoded = decode_fields({FIELD.encode(): frame})
    assert decoded.event == event
    assert dict(decoded.headers) == extra


def test_entries_are_readable_json_for_redis_cli() -> None:
    event = FACTORY.keys_event("positions", ["42:all"], reason="fill")
    envelope = orjson.loads(encode_event(event, {"traceparent": TRACEPARENT})[FIELD])
    assert envelope["headers"]["traceparent"] == TRACEPARENT
    assert envelope["headers"]["content-type"] == "application/json"
    assert orjson.loads(envelope["data"])["keys"] == ["42:all"]


def test_a_bare_json_event_in_the_data_field_decodes() -> None:
    event = FACTORY.flush("prices")
    decoded = decode_fields({FIELD: event.model_dump_json()})
    assert decoded.event == event
    assert decoded.headers == {}


def test_plain_fields_decode_with_trace_fields_as_headers() -> None:
    fields = {
        b"schema_version": b"1",
        b"kind": b"keys",
        b"event_id": b"01HZZZ",
        b"namespace": b"market",
        b"keys": b'["m1:summary", "m1:detail"]',
        b"producer": b"ops",
        b"created_at_ms": b"1700000000000",
        b"traceparent": TRACEPARENT.encode(),
    }
    decoded = decode_fields(fields)
    assert decoded.event.kind == "keys"
    assert decoded.event.keys == ("m1:summary", "m1:detail")  # type: ignore[union-attr]
    assert decoded.traceparent == TRACEPARENT


def test_decoding_checks_the_namespace_only_when_given_a_registry() -> None:
    data = {**FACTORY.flush("prices").model_dump(), "namespace": "orders"}
    fields = {FIELD: orjson.dumps(data)}
    assert decode_fields(fields).event.namespace == "orders"
    with pytest.raises(EventDecodeError) as caught:
        decode_fields(fields, registry=REGISTRY, entry_id=b"7-1")
    assert caught.value.rule == "namespace.unknown"
    assert caught.value.entry_id == "7-1"


# ---- refusals ------------------------------------------------------------------------------
def _payload(**changes: Any) -> dict[bytes, bytes]:
    data = {**FACTORY.keys_event("positions", ["1:all"]).model_dump(), **changes}
    data = {k: v for k, v in data.items() if v is not None}
    return {FIELD.encode(): orjson.dumps(data)}


BAD = [
    ({}, "fields.missing"),
    ({b"__data__": b"{not json"}, "json.invalid"),
    ({b"__data__": b"[1, 2]"}, "event.type"),
    ({b"__data__": b'{"data": "{oops", "headers": {}}'}, "json.invalid"),
    ({b"__data__": BINARY_MAGIC + b"\x00\x01\x00"}, "frame.binary"),
    ({b"__data__": BINARY_MAGIC + b"\x00\x02" + bytes(12)}, "frame.version"),
    ({b"__data__": b" " * (1024 * 1024 + 1)}, "entry.too_large"),
    (_payload(schema_version=2), "schema_version.unsupported"),
    (_payload(schema_version=None), "schema_version.missing"),
    (_payload(schema_version=True), "schema_version.unsupported"),
    (_payload(event_id=None), "event_id.missing"),
    (_payload(created_at_ms=None), "created_at_ms.missing"),
    (_payload(kind="purge"), "kind.unknown"),
    (_payload(keys=["x" * (MAX_ID_LENGTH + 1)]), "id.too_long"),
    ({b"kind": b"keys", b"keys": b"not-json"}, "keys.type"),
    ({b"kind": b"\xff"}, "fields.encoding"),
]


@pytest.mark.parametrize(("fields", "rule"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_entry_raises_a_decode_error_naming_the_rule(
    fields: dict[bytes, bytes], rule: str
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_fields(fields, entry_id="1-1")
    assert caught.value.rule == rule
    assert caught.value.entry_id == "1-1"


@settings(max_examples=500, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=120).map(lambda b: BINARY_MAGIC + b"\x00\x01" + b),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_the_decoder_raises_only_its_decode_error_on_arbitrary_bytes(data: bytes) -> None:
    for fields in ({b"__data__": data}, {b"kind": data, b"keys": data}):
        try:
            decode_fields(fields)  # type: ignore[arg-type]
        except EventDecodeError:
            pass
        envelope = {
            b"__data__": orjson.dumps({"data": data.decode(errors="replace"), "headers": {}})
        }
        for result in decode_entries([(b"1-0", fields), (b"1-1", envelope)]):  # type: ignore[list-item]
            assert isinstance(result, DecodedEntry | EventDecodeError)


def test_a_pending_entry_deleted_from_the_stream_is_a_named_decode_error() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_fields(None, entry_id="4-0")  # type: ignore[arg-type]
    assert caught.value.rule == "entry.deleted"
    (result,) = decode_entries([(b"4-0", None)])  # type: ignore[list-item]
    assert isinstance(result, EventDecodeError) and result.rule == "entry.deleted"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "schema_version",
                "kind",
                "event_id",
                "namespace",
                "keys",
                "pattern",
                "producer",
                "created_at_ms",
                "reason",
                "headers",
                "data",
            ]
        ),
        st.one_of(
            st.none(), st.integers(), st.text(max_size=6), st.lists(st.integers(), max_size=2)
        ),
    )
)
def test_the_decoder_raises_only_its_decode_error_on_near_miss_events(data: dict[str, Any]) -> None:
    try:
        decode_fields({FIELD: json.dumps({"schema_version": 1, **data})})
    except EventDecodeError:
        pass


# ---- trace headers and batches --------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (TRACEPARENT, True),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),
        (TRACEPARENT + "\n", False),
        ("garbage", False),
    ],
)
def test_traceparent_is_exposed_only_when_well_formed(value: str, valid: bool) -> None:
    entry = DecodedEntry(FACTORY.flush("prices"), {"traceparent": value, "tracestate": "a=1,b=2"})
    assert entry.traceparent == (value if valid else None)
    assert entry.trace_carrier() == (
        {"traceparent": value, "tracestate": "a=1,b=2"} if valid else {}
    )


def test_an_oversized_tracestate_is_dropped() -> None:
    entry = DecodedEntry(
        FACTORY.flush("prices"), {"traceparent": TRACEPARENT, "tracestate": "a" * 600}
    )
    assert entry.trace_carrier() == {"traceparent": TRACEPARENT}


def test_decode_entries_keeps_order_and_puts_errors_in_place() -> None:
    good = [FACTORY.keys_event("positions", [f"{i}:all"]) for i in range(3)]
    batch = [
        (b"1-0", encode_event(good[0])),
        (b"1-1", {b"__data__": b"junk"}),
        (b"1-2", encode_event(good[1])),
        (b"1-3", _payload(namespace="orders")),
        (b"1-4", encode_event(good[2])),
    ]
    out = decode_entries(batch, registry=REGISTRY)
    assert [type(o).__name__ for o in out] == [
        "DecodedEntry", "EventDecodeError", "DecodedEntry", "EventDecodeError", "DecodedEntry"
    ]  # fmt: skip
    assert [o.event for o in out if isinstance(o, DecodedEntry)] == good
    assert [o.entry_id for o in out] == ["1-0", "1-1", "1-2", "1-3", "1-4"]
    assert [o.rule for o in out if isinstance(o, EventDecodeError)] == [
        "json.invalid",
        "namespace.unknown",
    ]


def test_decode_entries_of_a_clean_batch_matches_decode_fields() -> None:
    batch = [(f"2-{i}", encode_event(FACTORY.flush("prices"))) for i in range(50)]
    assert decode_entries(batch) == [decode_fields(f, entry_id=i) for i, f in batch]


def test_an_oversized_envelope_is_refused_at_encoding() -> None:
    with pytest.raises(ContractError) as caught:
        encode_event(FACTORY.flush("prices"), {"x-big": "a" * (1024 * 1024)})
    assert caught.value.rule == "event.too_large"


def test_non_text_headers_are_refused_at_encoding() -> None:
    with pytest.raises(ContractError) as caught:
        encode_event(FACTORY.flush("prices"), {"x-n": 5})  # type: ignore[dict-item]
    assert caught.value.rule == "headers.type"


def _outcome(result: DecodedEntry | EventDecodeError) -> tuple[str, object]:
    if isinstance(result, EventDecodeError):
        return ("error", (result.rule, result.entry_id))
    return ("ok", (result.event, dict(result.headers), result.entry_id))


def _spliced(a: Event, b: Event) -> list[dict[bytes, bytes]]:
    # two entries whose data strings, joined with a comma, would form a different JSON array
    data_a = a.model_dump_json()[:-1] + ',"x":"'
    data_b = '"' + b.model_dump_json()[1:]
    return [{FIELD.encode(): orjson.dumps({"data": d, "headers": {}})} for d in (data_a, data_b)]


def _tampered(event: Event, **changes: Any) -> dict[bytes, bytes]:
    # an entry in our envelope whose event has fields no producer of ours would write
    data = orjson.dumps({**event.model_dump(mode="json"), **changes}).decode()
    return {FIELD.encode(): orjson.dumps({"data": data, "headers": {}})}


# What the batch decoder's compiled validator (cachebus.contracts._compiled) decides without the
# models' Python validators: a version written as a bool or a float, ids past the count that
# always fits, with a total under and over the limit.
near_misses = st.one_of(
    events().map(lambda e: _tampered(e, schema_version=True)),
    events().map(lambda e: _tampered(e, schema_version=1.0)),
    st.sampled_from([ALWAYS_FITS, ALWAYS_FITS + 1]).flatmap(
        lambda n: st.sampled_from([8, MAX_ID_LENGTH]).map(
            lambda size: _tampered(
                FACTORY.flush("prices"), kind="keys", keys=[f"{i:0{size}d}" for i in range(n)]
            )
        )
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            events().map(encode_event),
            near_misses,
            events().map(lambda e: _payload(**{**e.model_dump(), "event_id": None})),
            events().map(
                lambda e: {FIELD.encode(): build_binary_frame(e.model_dump_json().encode(), {})}
            ),
            st.just({b"__data__": b'{"data": "{}", "headers": {}}'}),
            st.just({b"__data__": b"junk"}),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_batch_decoding_agrees_with_decoding_each_entry(
    fields_list: list[dict[Any, Any]], splice: bool
) -> None:
    if splice:
        fields_list += _spliced(FACTORY.flush("prices"), FACTORY.flush("market"))
    batch = [(f"3-{i}".encode(), f) for i, f in enumerate(fields_list)]
    one_by_one = []
    for entry_id, fields in batch:
        try:
            one_by_one.append(decode_fields(fields, entry_id=entry_id))
        except EventDecodeError as exc:
            one_by_one.append(exc)
    assert [_outcome(r) for r in decode_entries(batch)] == [_outcome(r) for r in one_by_one]


def test_the_batch_decoder_calls_no_python_validator_for_keys_or_flush_events() -> None:
    # The consumer decodes every event through it: a validator added to the models must be
    # compiled here too (see cachebus.contracts._compiled), or the catch-up path pays for it.
    assert python_callbacks(compiled_schema(codec._ENVELOPE_BATCH)) == ["_inside_namespace"]
    assert "_not_a_bool" in python_callbacks(codec._ENVELOPE_BATCH.core_schema)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"schema_version": True}, "schema_version.unsupported"),
        ({"kind": "keys", "keys": ["x" * MAX_ID_LENGTH] * (ALWAYS_FITS + 1)}, "keys.too_large"),
    ],
)
def test_what_the_compiled_validator_refuses_the_models_name(
    changes: dict[str, Any], rule: str
) -> None:
    good = encode_event(FACTORY.flush("prices"))
    batch = [
        (b"1-0", good),
        (b"1-1", _tampered(FACTORY.flush("prices"), **changes)),
        (b"1-2", good),
    ]
    first, bad, last = decode_entries(batch)
    assert isinstance(bad, EventDecodeError) and bad.rule == rule
    assert isinstance(first, DecodedEntry) and isinstance(last, DecodedEntry)
