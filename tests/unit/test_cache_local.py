"""LocalCache: the in-process L1 with the same invalidation surface as Redis."""

from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.keys import KeyRef
from cachebus.core import LocalCache
from tests.harness.registry import REGISTRY, Keys


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def l1(clock: Clock) -> LocalCache:
    return LocalCache(REGISTRY, maxsize=100, timer=clock)


def test_values_live_for_their_namespace_ttl_class(l1: LocalCache, clock: Clock) -> None:
    l1.set("prices", "m1", 0.52)  # prices: 20 s
    l1.set("user", "7:profile", {"name": "a"})  # user data: 3600 s
    clock.now = 19.0
    assert l1.get("prices", "m1") == 0.52
    clock.now = 21.0
    assert l1.get("prices", "m1") is None
    assert l1.get("user", "7:profile") == {"name": "a"}


def test_an_explicit_ttl_overrides_the_class(l1: LocalCache, clock: Clock) -> None:
    l1.set("user", "1:profile", "x", ttl=5)
    clock.now = 6.0
    assert l1.get("user", "1:profile", "miss") == "miss"


def test_exact_invalidation_counts_only_live_entries(l1: LocalCache) -> None:
    l1.set("positions", "4:all", [1])
    l1.set("positions", "4:9", [2])
    assert l1.invalidate_keys("positions", ["4:all", "4:9", "4:absent"]) == 2
    assert len(l1) == 0


def test_refs_from_many_namespaces_are_invalidated_together(l1: LocalCache) -> None:
    summary, detail = Keys.market_all("0xabc")
    l1.set(summary.namespace, summary.id, 1)
    l1.set(detail.namespace, detail.id, 2)
    l1.set("prices", "0xabc", 0.4)
    assert l1.invalidate_refs([summary, detail, KeyRef("prices", "0xabc")]) == 3
    assert len(l1) == 0


def test_patterns_match_ids_like_redis_and_never_other_users(l1: LocalCache) -> None:
    for user in ("4", "42", "4*2"):
        l1.set("positions", f"{user}:all", user)
    pattern = Keys.user_positions_all("4*2").pattern  # glob characters escaped
    assert l1.invalidate_pattern("positions", pattern) == 1
    assert KeyRef("positions", "4:all") in l1 and KeyRef("positions", "42:all") in l1
    assert l1.invalidate_pattern("positions", "4*") == 2


def test_a_bare_star_pattern_is_refused(l1: LocalCache) -> None:
    with pytest.raises(ContractError, match="flush_namespace"):
        l1.invalidate_pattern("positions", "*")


def test_flushes_empty_a_namespace_or_everything(l1: LocalCache) -> None:
    l1.set("prices", "a", 1)
    l1.set("prices", "b", 2)
    l1.set("market", "a:summary", 3)
    assert l1.flush_namespace("prices") == 2
    assert len(l1) == 1
    assert l1.flush() == 1 and len(l1) == 0


def test_each_namespace_is_bounded(clock: Clock) -> None:
    small = LocalCache(REGISTRY, maxsize=3, timer=clock)
    for i in range(10):
        small.set("prices", str(i), i)
    assert len(small) == 3
    assert small.get("prices", "9") == 9


def test_unknown_namespaces_and_bad_ids_get_clear_errors(l1: LocalCache) -> None:
    with pytest.raises(ContractError, match="not registered"):
        l1.set("nope", "1", 1)
    with pytest.raises(ContractError, match="must not be empty"):
        l1.get("prices", "")
    with pytest.raises(ConfigError):
        LocalCache(REGISTRY, maxsize=0)


def test_hits_and_misses_are_counted(l1: LocalCache) -> None:
    l1.set("prices", "a", 1)
    l1.get("prices", "a")
    l1.get("prices", "b")
    assert (l1.hits, l1.misses) == (1, 1)
