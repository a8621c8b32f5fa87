"""The producer's fast path (payload dicts) and the models enforce the same rules."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cachebus.contracts import EventFactory
from cachebus.contracts.errors import ContractError
from cachebus.contracts.events import validate_event
from tests.harness.registry import REGISTRY

FACTORY = EventFactory("api", registry=REGISTRY)

namespaces = st.sampled_from(["positions", "market", "prices", "nope", "bad ns", ""])
ids = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-5, max_value=10**6),
    st.sampled_from(["x" * 512, "x" * 513, "a\rb", "\x00"]),
)
id_lists = st.lists(ids, max_size=6)
reasons = st.one_of(st.text(max_size=12), st.just("r" * 257))
patterns = st.one_of(
    st.text(alphabet="ab:*?[]\\\n", max_size=10), st.just("positions:1:*"), st.just("*")
)


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ContractError as exc:
        return "refused", exc.rule


def _same(payload_call: Any, model_call: Any) -> None:
    fast = _outcome(payload_call)
    model = _outcome(model_call)
    assert fast[0] == model[0], (fast, model)
    if fast[0] == "refused":
        assert fast[1] == model[1]
        return
    payload, event = fast[1], model[1]
    # the payload is a complete, valid event that reads back as the same fields
    reread = validate_event(payload, registry=FACTORY.registry)
    expected = {**event.model_dump(), "event_id": payload["event_id"]}
    assert {**reread.model_dump(), "created_at_ms": event.created_at_ms} == expected


@settings(max_examples=300, deadline=None)
@given(namespace=namespaces, key_ids=id_lists, reason=reasons)
@example(namespace="positions", key_ids=[], reason="")
@example(namespace="positions", key_ids=["x" * 500] * 200, reason="")
def test_keys_payload_accepts_and_refuses_like_the_model(
    namespace: str, key_ids: list[Any], reason: str
) -> None:
    _same(
        lambda: FACTORY.keys_payload(namespace, key_ids, reason),
        lambda: FACTORY.keys_event(namespace, key_ids, reason=reason),
    )


@settings(max_examples=300, deadline=None)
@given(namespace=namespaces, pattern=patterns, reason=reasons)
def test_pattern_payload_accepts_and_refuses_like_the_model(
    namespace: str, pattern: str, reason: str
) -> None:
    _same(
        lambda: FACTORY.pattern_payload(namespace, pattern, reason),
        lambda: FACTORY.pattern(namespace, pattern, reason=reason),
    )


@settings(max_examples=100, deadline=None)
@given(namespace=namespaces, reason=reasons)
def test_flush_payload_accepts_and_refuses_like_the_model(namespace: str, reason: str) -> None:
    _same(
        lambda: FACTORY.flush_payload(namespace, reason),
        lambda: FACTORY.flush(namespace, reason=reason),
    )
