"""Key templates: checked when read, rendering ids from named parts, prefix patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import glob_match
from cachebus.contracts.templates import KeyTemplate


@pytest.mark.parametrize(
    ("text", "rule", "says"),
    [
        ("", "template.empty", "non-empty"),
        ("{user_id", "template.syntax", "unclosed '{'"),
        ("user_id}", "template.syntax", "'}' without its '{'"),
        ("{user id}", "template.name", "not an identifier"),
        ("{}", "template.name", "not an identifier"),
        ("{a}:{a}", "template.duplicate", "twice"),
        ("{a}{b}", "template.adjacent", "side by side"),
        ("{a}*", "template.glob", "glob character '*'"),
        ("x[{a}]", "template.glob", "glob character '['"),
        ("{a}\n", "template.control_char", "NUL, CR or LF"),
    ],
)
def test_a_bad_template_names_its_rule(text: str, rule: str, says: str) -> None:
    with pytest.raises(ContractError) as caught:
        KeyTemplate.parse(text)
    assert caught.value.rule == rule
    assert says in str(caught.value)


def test_a_template_splits_into_literals_and_placeholders() -> None:
    t = KeyTemplate.parse("u:{user_id}:{view}")
    assert t.literals == ("u:", ":", "") and t.placeholders == ("user_id", "view")
    fixed = KeyTemplate.parse("settings")
    assert fixed.placeholders == () and fixed.render() == "settings"


def test_render_builds_the_id_from_named_parts() -> None:
    t = KeyTemplate.parse("{user_id}:{view}")
    assert t.render(user_id=42, view="all") == "42:all"
    assert t.render({"user_id": "7", "view": "p:1"}) == "7:p:1"  # the last part may hold ':'
    for bad, rule in (
        ({"user_id": 1}, "template.missing_part"),
        ({"user_id": 1, "view": "a", "x": 2}, "template.unknown_part"),
        ({"user_id": "4:2", "view": "a"}, "template.part_separator"),
        ({"user_id": "", "view": "a"}, "id.empty"),
        ({"user_id": "a\nb", "view": "a"}, "id.control_char"),
    ):
        with pytest.raises(ContractError) as caught:
            t.render(bad)
        assert caught.value.rule == rule


def test_a_prefix_pattern_covers_the_ids_of_its_leading_parts_and_no_other() -> None:
    t = KeyTemplate.parse("{user_id}:{cart_id}:{line}")
    pattern = t.prefix_pattern(user_id=4)
    assert pattern == "4:*"
    assert glob_match(pattern, t.render(user_id=4, cart_id="c", line=1))
    assert not glob_match(pattern, t.render(user_id=42, cart_id="c", line=1))
    assert t.prefix_pattern(user_id=4, cart_id="c") == "4:c:*"
    assert t.prefix_pattern(user_id="4*2") == "4\\*2:*"  # glob characters are data
    assert t.prefix_pattern(user_id=4, cart_id="c", line=1) == "4:c:1"  # all parts: one id
    for bad in ({}, {"cart_id": "c"}):
        with pytest.raises(ContractError) as caught:
            t.prefix_pattern(bad)
        assert caught.value.rule == "template.prefix"


def test_matches_tells_the_template_shape() -> None:
    t = KeyTemplate.parse("{telegram_id}:profile")
    assert t.matches("9:profile") and not t.matches("9") and not t.matches("9:profiles")
    assert KeyTemplate.parse("{id}").matches("anything:at all")


_part = st.text(min_size=1, max_size=12).filter(lambda s: not set(s) & {":", "\x00", "\r", "\n"})


@given(_part, _part, _part, _part)
def test_a_prefix_of_one_user_never_matches_another_users_ids(
    user: str, other: str, cart: str, line: str
) -> None:
    t = KeyTemplate.parse("{user_id}:{cart_id}")
    pattern = t.prefix_pattern(user_id=user)
    assert glob_match(pattern, t.render(user_id=user, cart_id=cart))
    assert t.matches(t.render(user_id=user, cart_id=line))
    if other != user:
        assert not glob_match(pattern, t.render(user_id=other, cart_id=cart))
