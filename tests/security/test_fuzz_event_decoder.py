"""The event decoder survives 100,000 arbitrary inputs with nothing but EventDecodeError.

Stream entries come from anyone who can XADD (a compromised producer included): the decoder
must turn any bytes into an event or an :class:`EventDecodeError` (which the consumer
dead-letters), never into another exception that would stop the consumer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cachebus.contracts._frames import BINARY_MAGIC, build_binary_frame
from cachebus.contracts.codec import (
    FIELD,
    DecodedEntry,
    decode_entries,
    decode_fields,
    encode_event,
)
from cachebus.contracts.errors import EventDecodeError
from cachebus.contracts.events import KeysInvalidated, NamespaceFlushed, PatternInvalidated
from tests.harness.registry import REGISTRY
from tests.security.fuzzing import mutate, run

TOTAL = 100_000
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
EVENTS = [
    KeysInvalidated(namespace="positions", keys=("42:all", "42:7"), producer="api", reason="r"),
    PatternInvalidated(namespace="market_lists", pattern="top:*", producer="bot"),
    NamespaceFlushed(namespace="prices", producer="workers", reason="feed restarted"),
]
FIELD_NAMES = [
    "schema_version", "kind", "event_id", "namespace", "keys", "pattern", "producer",
    "created_at_ms", "reason", "traceparent", "tracestate", "__data__",
]  # fmt: skip


def _seeds() -> tuple[list[bytes], list[bytes], list[dict[str, Any]]]:
    envelopes = [encode_event(e, TRACE)[FIELD] for e in EVENTS]
    inner = [orjson.dumps(orjson.loads(env)["data"]) for env in envelopes]
    frames = [build_binary_frame(orjson.loads(env)["data"].encode(), TRACE) for env in envelopes]
    plain = [{k: v for k, v in json.loads(orjson.loads(env)["data"]).items()} for env in envelopes]
    return envelopes + inner, frames, plain


def _plain_fields(rng: random.Random, seed: Mapping[str, Any]) -> dict[Any, Any]:
    fields: dict[Any, Any] = {}
    for name, value in seed.items():
        raw = json.dumps(value).encode() if isinstance(value, list) else str(value).encode()
        roll = rng.random()
        if roll < 0.15:
            continue
        fields[name.encode() if rng.random() < 0.5 else name] = (
            mutate(rng, raw) if roll < 0.6 else raw
        )
    if rng.random() < 0.3:
        fields[rng.choice(FIELD_NAMES)] = rng.randbytes(rng.randint(0, 40))
    return fields


def inputs(seed: int = 20261125) -> Iterator[dict[Any, Any] | None]:
    rng = random.Random(seed)
    envelopes, frames, plain = _seeds()
    for i in range(TOTAL):
        kind = i % 6
        if kind == 0:
            yield {FIELD.encode(): rng.randbytes(rng.randint(0, 300))}
        elif kind == 1:
            yield {FIELD.encode(): mutate(rng, rng.choice(envelopes))}
        elif kind == 2:
            yield {FIELD: mutate(rng, rng.choice(frames))}
        elif kind == 3:
            yield _plain_fields(rng, rng.choice(plain))
        elif kind == 4:  # a sound envelope around a damaged event: reaches validation
            data = mutate(rng, rng.choice(envelopes[len(EVENTS) :])).decode(errors="replace")
            headers = {"traceparent": mutate(rng, TRACE["traceparent"].encode()).decode("latin1")}
            yield {FIELD: orjson.dumps({"data": data, "headers": headers})}
        else:
            yield (
                None
                if rng.random() < 0.01
                else {FIELD: BINARY_MAGIC + rng.randbytes(rng.randint(0, 64))}
            )


def test_decode_fields_survives_100000_arbitrary_entries() -> None:
    outcome = run(
        inputs(),
        lambda fields: decode_fields(fields, entry_id="1-0", registry=REGISTRY),  # type: ignore[arg-type]
        EventDecodeError,
    )
    outcome.check(TOTAL)


def test_decode_entries_survives_the_same_100000_entries_in_batches() -> None:
    entries = [(f"{i}-0", fields) for i, fields in enumerate(inputs())]
    unexpected: list[str] = []
    decoded = refused = 0
    for start in range(0, TOTAL, 500):
        batch = entries[start : start + 500]
        try:
            results = decode_entries(batch, registry=REGISTRY)  # type: ignore[arg-type]
        except Exception as exc:
            unexpected.append(f"batch {start}: {type(exc).__name__}: {exc}"[:300])
            continue
        assert len(results) == len(batch)
        for (entry_id, _), result in zip(batch, results, strict=True):
            if isinstance(result, EventDecodeError):
                refused += 1
                assert result.entry_id == entry_id
            else:
                assert isinstance(result, DecodedEntry)
                decoded += 1
    assert not unexpected, unexpected[:5]
    assert decoded > 0 and refused > 0 and decoded + refused == TOTAL


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(
        [json.loads(orjson.loads(encode_event(e)[FIELD])["data"]) for e in EVENTS]
    ),
    replaced=st.dictionaries(st.sampled_from(FIELD_NAMES[:9]), json_values, max_size=3),
    dropped=st.sets(st.sampled_from(FIELD_NAMES[:9]), max_size=2),
    headers=st.one_of(json_values, st.dictionaries(st.text(max_size=12), json_values)),
)
def test_near_miss_events_in_sound_envelopes_decode_or_raise_only_decode_errors(
    base: dict[str, Any], replaced: dict[str, Any], dropped: set[str], headers: Any
) -> None:
    event = {k: v for k, v in {**base, **replaced}.items() if k not in dropped}
    envelope = json.dumps({"data": json.dumps(event), "headers": headers}).encode()
    try:
        decoded = decode_fields({FIELD: envelope}, registry=REGISTRY)
    except EventDecodeError:
        return
    assert decoded.event.namespace in REGISTRY
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in decoded.headers.items())
