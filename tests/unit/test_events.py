"""The event contract: construction rules, rule names, registries, ids, the factory."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from cachebus.contracts import (
    EventFactory,
    KeysInvalidated,
    Namespace,
    NamespaceFlushed,
    PatternInvalidated,
)
from cachebus.contracts.errors import ContractError
from cachebus.contracts.events import validate_event
from cachebus.contracts.factory import keys_invalidated
from cachebus.contracts.ids import event_id_time_ms, new_event_id
from cachebus.contracts.rules import MAX_KEYS_PER_EVENT
from tests.harness.registry import REGISTRY, Keys

BASE: dict[str, Any] = {"namespace": "positions", "producer": "api", "reason": "fill"}


def make(kind: type[Any], **overrides: Any) -> Any:
    """An event of ``kind`` checked against the tests' registry (as a factory or a decoder
    given the registry checks it)."""
    fields = {**BASE, **overrides}
    if kind is KeysInvalidated:
        fields.setdefault("keys", ("42:all",))
    if kind is PatternInvalidated:
        fields.setdefault("pattern", "42:*")
    fields["kind"] = kind.model_fields["kind"].default
    return validate_event(fields, registry=REGISTRY)


def test_a_model_built_without_a_registry_checks_the_namespace_syntax_only() -> None:
    # The library knows no namespace: only a registry can say one is unknown.
    assert NamespaceFlushed(namespace="anything", producer="api").namespace == "anything"
    with pytest.raises(ContractError) as caught:
        NamespaceFlushed(namespace="bad ns", producer="api")
    assert caught.value.rule == "namespace.invalid"


def test_each_kind_builds_with_an_id_and_a_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    for kind in (KeysInvalidated, PatternInvalidated, NamespaceFlushed):
        event = make(kind)
        assert event.schema_version == 1
        assert len(event.event_id) == 26
        assert before <= event.created_at_ms <= time.time_ns() // 1_000_000
        assert event.producer == "api"


REFUSED = [
    (KeysInvalidated, {"namespace": "nope"}, "namespace.unknown"),
    (KeysInvalidated, {"namespace": "bad ns"}, "namespace.invalid"),
    (KeysInvalidated, {"keys": ()}, "keys.empty"),
    (KeysInvalidated, {"keys": ("a",) * (MAX_KEYS_PER_EVENT + 1)}, "keys.too_many"),
    (KeysInvalidated, {"keys": ("x" * 500,) * 200}, "keys.too_large"),
    (KeysInvalidated, {"keys": ("",)}, "id.empty"),
    (KeysInvalidated, {"keys": ("x" * 513,)}, "id.too_long"),
    (KeysInvalidated, {"keys": ("a\nb",)}, "id.control_char"),
    (KeysInvalidated, {"keys": (42,)}, "id.type"),
    (KeysInvalidated, {"keys": None}, "keys.type"),
    (PatternInvalidated, {"pattern": "*"}, "pattern.bare_star"),
    (PatternInvalidated, {"pattern": "?*"}, "pattern.bare_star"),
    (PatternInvalidated, {"pattern": "positions:42:*"}, "pattern.outside_namespace"),
    (PatternInvalidated, {"pattern": "[ab"}, "pattern.syntax"),
    (PatternInvalidated, {"pattern": "a" * 300}, "pattern.too_long"),
    (PatternInvalidated, {"pattern": ""}, "pattern.empty"),
    (NamespaceFlushed, {"reason": "r" * 300}, "reason.too_long"),
    (NamespaceFlushed, {"reason": "line\nbreak"}, "reason.invalid"),
    (NamespaceFlushed, {"producer": "a b"}, "producer.invalid"),
    (NamespaceFlushed, {"event_id": "bad id!"}, "event_id.invalid"),
    (NamespaceFlushed, {"event_id": "x" * 65}, "event_id.too_long"),
    (NamespaceFlushed, {"created_at_ms": -1}, "created_at_ms.range"),
    (NamespaceFlushed, {"created_at_ms": "123"}, "created_at_ms.type"),
    (NamespaceFlushed, {"schema_version": 2}, "schema_version.unsupported"),
]


@pytest.mark.parametrize(("kind", "overrides", "rule"), REFUSED, ids=[r[2] for r in REFUSED])
def test_a_refused_event_names_the_rule_it_broke(
    kind: type[Any], overrides: dict[str, Any], rule: str
) -> None:
    with pytest.raises(ContractError) as caught:
        make(kind, **overrides)
    assert caught.value.rule == rule
    assert rule in str(caught.value)
    assert not isinstance(caught.value, ValidationError)


def test_unknown_namespace_error_lists_the_known_ones() -> None:
    with pytest.raises(ContractError, match="known: market, market_by_condition"):
        make(NamespaceFlushed, namespace="market_detail")


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    event = validate_event(
        {**BASE, "kind": "flush", "event_id": "01ABC", "created_at_ms": 1, "priority": "high"}
    )
    assert isinstance(event, NamespaceFlushed)
    assert "priority" not in event.model_dump()


def test_events_are_frozen() -> None:
    event = make(NamespaceFlushed)
    with pytest.raises(ValidationError):
        event.namespace = "market"  # type: ignore[misc]


def test_a_custom_registry_is_used_for_the_namespace_check() -> None:
    registry = REGISTRY.with_namespaces(Namespace("orders", "{order_id}", 30))
    factory = EventFactory("worker", registry)
    assert factory.flush("orders").namespace == "orders"
    with pytest.raises(ContractError) as caught:
        EventFactory("worker", registry=REGISTRY).flush("orders")
    assert caught.value.rule == "namespace.unknown"


def test_a_none_registry_in_the_context_checks_syntax_only() -> None:
    data = {**BASE, "namespace": "elsewhere", "kind": "flush"}
    assert validate_event(data, registry=None).namespace == "elsewhere"
    with pytest.raises(ContractError) as caught:
        validate_event({**data, "namespace": "no spaces"}, registry=None)
    assert caught.value.rule == "namespace.invalid"


def test_event_ids_sort_in_creation_order_and_carry_their_time() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    stamp = event_id_time_ms(ids[0])
    assert stamp is not None and abs(stamp - time.time_ns() // 1_000_000) < 5000
    assert event_id_time_ms("not-ours") is None


def test_factory_turns_int_ids_into_text_and_refuses_a_bare_string() -> None:
    factory = EventFactory("api", registry=REGISTRY)
    assert factory.keys_event("prices", [7, "8"]).keys == ("7", "8")
    with pytest.raises(ContractError) as caught:
        factory.keys_event("prices", "abc")
    assert caught.value.rule == "keys.type"


def test_factory_refuses_a_bad_producer_name() -> None:
    with pytest.raises(ContractError) as caught:
        EventFactory("my service", registry=REGISTRY)
    assert caught.value.rule == "producer.invalid"


def test_events_for_groups_ids_per_namespace_and_keeps_patterns() -> None:
    factory = EventFactory("api", registry=REGISTRY)
    refs = [
        *Keys.market_all("m1"),
        Keys.user_positions(42),
        Keys.market("m1"),  # a duplicate
        Keys.user_positions_all(42),
        factory.flush("prices"),
    ]
    events = factory.events_for(refs, reason="trade")
    kinds = sorted((type(e).__name__, e.namespace) for e in events)
    assert kinds == [
        ("KeysInvalidated", "market"),
        ("KeysInvalidated", "positions"),
        ("NamespaceFlushed", "prices"),
        ("PatternInvalidated", "positions"),
    ]
    market = next(e for e in events if e.namespace == "market")
    assert isinstance(market, KeysInvalidated)
    assert market.keys == ("m1:summary", "m1:detail")


def test_events_for_splits_many_ids_into_events_that_fit() -> None:
    ids = [f"{i}:all" for i in range(2500)]
    events = EventFactory("api", registry=REGISTRY).events_for(
        [Keys.user_positions(i) for i in range(2500)]
    )
    assert [len(e.keys) for e in events if isinstance(e, KeysInvalidated)] == [1000, 1000, 500]
    assert [k for e in events if isinstance(e, KeysInvalidated) for k in e.keys] == ids


def test_events_for_refuses_what_it_cannot_invalidate() -> None:
    with pytest.raises(ContractError) as caught:
        EventFactory("api", registry=REGISTRY).events_for(["positions:42"])  # type: ignore[list-item]
    assert caught.value.rule == "ref.type"


def test_module_builders_use_the_default_registry() -> None:
    event = keys_invalidated(
        "user", ["1:profile"], producer="api", reason="edit", registry=REGISTRY
    )
    assert event.keys == ("1:profile",)
