"""The tests' key registry (``tests/registry.toml``) and typed builders of its keys.

The library knows no namespace: every test that needs one uses this registry, explicitly
(``registry=REGISTRY``, ``--registry REGISTRY_FILE``), or one of its own.
"""

from __future__ import annotations

from pathlib import Path

from cachebus.contracts.keys import KeyRef, PatternRef
from cachebus.contracts.registry import Registry

__all__ = ["REGISTRY", "REGISTRY_FILE", "Keys"]

REGISTRY_FILE = Path(__file__).resolve().parents[1] / "registry.toml"
REGISTRY = Registry.from_file(REGISTRY_FILE)


class Keys:
    """The tests' typed builders, all through the registry's templates."""

    @staticmethod
    def user_positions(user_id: str | int) -> KeyRef:
        return REGISTRY["positions"].ref(user_id=user_id, view="all")

    @staticmethod
    def user_position(user_id: str | int, position_id: str | int) -> KeyRef:
        return REGISTRY["positions"].ref(user_id=user_id, view=position_id)

    @staticmethod
    def user_positions_all(user_id: str | int) -> PatternRef:
        return REGISTRY["positions"].prefix(user_id=user_id)

    @staticmethod
    def user_profile(telegram_id: str | int) -> KeyRef:
        return REGISTRY["user"].ref(telegram_id=telegram_id)

    @staticmethod
    def market(market_id: str) -> KeyRef:
        return REGISTRY["market"].ref(market_id=market_id, view="summary")

    @staticmethod
    def market_all(market_id: str) -> tuple[KeyRef, KeyRef]:
        market = REGISTRY["market"]
        return (
            market.ref(market_id=market_id, view="summary"),
            market.ref(market_id=market_id, view="detail"),
        )

    @staticmethod
    def market_by_condition(condition_id: str) -> KeyRef:
        return REGISTRY["market_by_condition"].ref(condition_id=condition_id)

    @staticmethod
    def price(market_id: str) -> KeyRef:
        return REGISTRY["prices"].ref(market_id=market_id)
