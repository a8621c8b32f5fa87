from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeySpace, escape_glob, glob_match, validate_pattern
from cachebus.contracts.registry import Namespace, Registry
from tests.harness.registry import REGISTRY, Keys


def test_audit_drift_is_resolved_into_one_shape_per_datum() -> None:
    ks = KeySpace(prefix="cb", scope="bot", registry=REGISTRY)
    assert ks.ref_key(Keys.user_positions(42)) == "cb:bot:positions:42:all"
    assert ks.ref_match(Keys.user_positions_all(42)) == "cb:bot:positions:42:*"
    # market: and market_detail: are two views of one namespace, invalidated together
    summary, detail = Keys.market_all("0xabc")
    assert {ks.ref_key(summary), ks.ref_key(detail)} == {
        "cb:bot:market:0xabc:summary",
        "cb:bot:market:0xabc:detail",
    }


def test_a_user_pattern_never_matches_another_user() -> None:
    ks = KeySpace(scope="bot", registry=REGISTRY)
    pattern = ks.ref_match(Keys.user_positions_all(4))
    assert glob_match(pattern, ks.ref_key(Keys.user_positions(4)))
    assert not glob_match(pattern, ks.ref_key(Keys.user_positions(42)))


def test_glob_characters_in_ids_are_escaped_in_patterns() -> None:
    ks = KeySpace(scope="bot", registry=REGISTRY)
    pattern = ks.ref_match(Keys.user_positions_all("4*2"))
    assert pattern == "cb:bot:positions:4\\*2:*"
    assert glob_match(pattern, "cb:bot:positions:4*2:all")
    assert not glob_match(pattern, "cb:bot:positions:4002:all")


def test_unknown_namespaces_and_bare_stars_are_refused_with_the_rule() -> None:
    ks = KeySpace(registry=REGISTRY)
    with pytest.raises(ContractError) as info:
        ks.key("nope", "1")
    assert info.value.rule == "namespace.unknown"
    for bare in ("*", "**", "?*", "[ab]*"):
        with pytest.raises(ContractError) as info:
            validate_pattern(bare)
        assert info.value.rule == "pattern.bare_star"
    with pytest.raises(ContractError, match="unclosed"):
        validate_pattern("abc[")


def test_reserved_keys_never_match_a_namespace_pattern() -> None:
    ks = KeySpace(scope="bot", registry=REGISTRY)
    for reserved in (
        ks.generation_key("prices"),
        ks.lease_key("prices", "x"),
        ks.lease_index_key("prices"),
        ks.sync_key("inval"),
    ):
        assert reserved.startswith(ks.root)
        assert not glob_match(ks.namespace_match("prices"), reserved)
    with pytest.raises(ContractError):
        Namespace("__gen__", "{id}", 20)


def test_parse_inverts_key() -> None:
    ks = KeySpace(scope="api", registry=REGISTRY)
    ref = Keys.user_position(7, "p:1")
    assert ks.parse(ks.ref_key(ref)) == ref


def test_registry_lists_and_extends() -> None:
    assert "prices" in REGISTRY
    extended = REGISTRY.with_namespaces(Namespace("orders", "{order_id}", 30))
    assert "orders" in extended and "orders" not in REGISTRY
    with pytest.raises(ContractError, match="twice"):
        Registry([Namespace("a", "{id}", 20), Namespace("a", "{id}", 20)])


@given(st.text(min_size=1, max_size=40).filter(lambda s: not set(s) & {"\x00", "\r", "\n"}))
def test_escaped_text_matches_exactly_itself(text: str) -> None:
    assert glob_match(escape_glob(text), text)
    assert not glob_match(escape_glob(text), text + "x")
