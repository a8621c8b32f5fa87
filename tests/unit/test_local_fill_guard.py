"""The L1 fill guard: a value loaded before an invalidation never lands after it."""

from __future__ import annotations

from cachebus.core import LocalCache
from tests.harness.registry import REGISTRY


def test_a_fill_after_an_invalidation_of_its_id_is_refused() -> None:
    l1 = LocalCache(REGISTRY)
    token = l1.reserve()  # a reader starts loading prices/a (old value)
    l1.invalidate_keys("prices", ["a"])  # the invalidation arrives meanwhile
    assert not l1.fill("prices", "a", "old", token)
    assert l1.get("prices", "a") is None
    assert l1.refused_fills == 1
    assert l1.fill("prices", "a", "new", l1.reserve())
    assert l1.get("prices", "a") == "new"


def test_other_ids_fill_normally() -> None:
    l1 = LocalCache(REGISTRY)
    token = l1.reserve()
    l1.invalidate_keys("prices", ["a"])
    assert l1.fill("prices", "b", 1, token)


def test_patterns_and_flushes_void_fills_of_their_namespace_only() -> None:
    l1 = LocalCache(REGISTRY)
    token = l1.reserve()
    l1.invalidate_pattern("market", "m1:*")
    assert not l1.fill("market", "m2:summary", 1, token)
    assert l1.fill("prices", "x", 1, token)
    token = l1.reserve()
    l1.flush()
    assert not l1.fill("prices", "x", 2, token)


def test_a_forgotten_invalidation_refuses_older_fills_rather_than_risk_staleness() -> None:
    l1 = LocalCache(REGISTRY, maxsize=1)  # remembers 1024 invalidated ids
    token = l1.reserve()
    l1.invalidate_keys("prices", [f"k{i}" for i in range(2000)])
    assert not l1.fill("prices", "k0", 1, token)  # its record was evicted: refused anyway
    assert l1.fill("prices", "k0", 1, l1.reserve())
