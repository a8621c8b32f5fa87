"""Typed reads of the L1 and the gate its owner sets on fills (no Redis involved)."""

from __future__ import annotations

import dataclasses

from cachebus.core.local import LocalCache
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings
from tests.harness.registry import REGISTRY


@dataclasses.dataclass
class Price:
    market_id: str
    bid: float


def test_a_typed_read_checks_the_value_and_a_wrong_one_is_a_miss() -> None:
    l1 = LocalCache(REGISTRY)
    l1.set("prices", "m1", Price("m1", 0.5))
    l1.set("prices", "m2", {"unexpected": True})
    assert l1.get("prices", "m1", type=Price) == Price("m1", 0.5)
    assert l1.get("prices", "m2", type=Price) is None
    assert l1.get("prices", "m2", "fallback", type=Price) == "fallback"
    assert l1.get("prices", "m2") == {"unexpected": True}


def test_fills_wait_for_the_gate_and_are_counted_as_refused() -> None:
    l1 = LocalCache(REGISTRY)
    open_ = False
    l1.fill_gate = lambda: open_
    assert not l1.fill("prices", "m1", 1, l1.reserve())
    assert l1.refused_fills == 1 and l1.get("prices", "m1") is None
    open_ = True
    assert l1.fill("prices", "m1", 1, l1.reserve())
    assert l1.get("prices", "m1") == 1


def test_a_services_l1_exists_before_start_and_refuses_fills_until_caught_up() -> None:
    settings = CachebusSettings(redis_url="redis://127.0.0.1:1/0", service="svc", broadcast=True)
    service = ConsumerService(settings, registry=REGISTRY)  # built, checked, nothing sent
    assert service.local is not None
    assert not service.local.fill("prices", "m1", 1, service.local.reserve())
    assert service.local.refused_fills == 1
