"""The committed JSON Schema matches the models, and accepts what we publish."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from jsonschema.validators import Draft202012Validator
from referencing import Registry, Resource

from cachebus.contracts import EventFactory
from cachebus.contracts.codec import (
    FINGERPRINT_HEADER,
    encode_event,
    encode_payloads,
    fingerprint_headers,
)
from cachebus.contracts.schema import SCHEMA_DIR, render, schemas
from tests.harness.registry import REGISTRY


def _committed(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", sorted(schemas()))
def test_committed_schema_is_what_the_models_generate(name: str) -> None:
    # When this fails, the models changed: run `python -m cachebus.contracts.schema` and commit.
    assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == render(schemas()[name])


def _validator(name: str) -> Draft202012Validator:
    resources = [
        (str(schema["$id"]), Resource.from_contents(schema))
        for schema in (_committed(n) for n in schemas())
    ]
    return Draft202012Validator(
        _committed(name),
        registry=Registry().with_resources(resources),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def test_every_kind_we_publish_is_valid_under_the_committed_schemas() -> None:
    factory = EventFactory("api", registry=REGISTRY)
    events = [
        factory.keys_event("positions", ["1:all", "1:7"], reason="fill"),
        factory.pattern("market_lists", "top:*"),
        factory.flush("prices", reason="feed restart"),
    ]
    event_schema = _validator("invalidation-event.v1.json")
    envelope_schema = _validator("envelope.v1.json")
    for event in events:
        envelope = orjson.loads(encode_event(event)["__data__"])
        envelope_schema.validate(envelope)
        event_schema.validate(orjson.loads(envelope["data"]))
    # As a producer writes them: with the registry fingerprint of the namespace in the headers.
    blobs = encode_payloads([e.__dict__ for e in events], None, fingerprint_headers(REGISTRY))
    for event, blob in zip(events, blobs, strict=True):
        envelope = orjson.loads(blob)
        envelope_schema.validate(envelope)
        assert envelope["headers"][FINGERPRINT_HEADER] == REGISTRY[event.namespace].fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "rename"},
        {"keys": []},
        {"keys": ["a\nb"]},
        {"namespace": "has space"},
        {"event_id": None},
        {"schema_version": 2},
        {"created_at_ms": -5},
        {"reason": "x" * 257},
    ],
    ids=lambda c: next(iter(c)),
)
def test_the_committed_schema_refuses_what_the_model_refuses(change: dict[str, object]) -> None:
    event = EventFactory("api", registry=REGISTRY).keys_event("positions", ["1:all"])
    data = {**event.model_dump(mode="json"), **change}
    with pytest.raises(jsonschema.ValidationError):
        _validator("invalidation-event.v1.json").validate(data)
