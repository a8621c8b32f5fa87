"""CacheConfig refuses nonsense with a message that says what is required."""

from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import KeySpace
from cachebus.core import CacheConfig
from cachebus.core._core import CacheCore
from tests.harness.registry import REGISTRY

SPACE = KeySpace("cb", "svc", registry=REGISTRY)


def test_ttls_come_from_the_registry_unless_overridden() -> None:
    config = CacheConfig(ttls={"prices": 5})
    core = CacheCore(SPACE, config)
    assert core.ttl_seconds("prices") == 5.0  # the override
    assert core.ttl_seconds("positions") == 30.0  # the registry's ttl_s
    assert core.ttl_seconds("market", ttl=7) == 7.0  # a per-call ttl
    assert CacheConfig().compress_threshold == 1024 and CacheConfig().scan_count == 1000


def test_adaptive_ttl_is_per_namespace() -> None:
    assert CacheConfig().adaptive("prices") and not CacheConfig(adaptive_ttl=False).adaptive("x")
    only = CacheConfig(adaptive_ttl=frozenset({"user"}))
    assert only.adaptive("user") and not only.adaptive("prices")


def test_a_config_naming_an_unregistered_namespace_is_refused_by_the_cache() -> None:
    for config in (
        CacheConfig(ttls={"orders": 10}),
        CacheConfig(adaptive_ttl=frozenset({"orders"})),
    ):
        with pytest.raises(ConfigError, match="registry lacks: orders"):
            CacheCore(SPACE, config)


def test_a_zero_ttl_is_refused() -> None:
    with pytest.raises(ConfigError, match="whole seconds >= 1"):
        CacheConfig(ttls={"market": 0})


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("compress_threshold", 0, "compress_threshold >= 1"),
        ("refresh_ahead", 1.5, "refresh_ahead between 0 and 1"),
        ("scan_count", 1, "scan_count between 10 and 100000"),
        ("pattern_max_keys", 0, "pattern_max_keys >= 1"),
        ("lease_ttl", 0, "lease_ttl > 0"),
    ],
)
def test_out_of_range_settings_name_the_rule(field: str, value: object, rule: str) -> None:
    with pytest.raises(ConfigError, match=rule):
        CacheConfig(**{field: value})  # type: ignore[arg-type]


def test_the_ttl_mapping_cannot_be_changed_after_construction() -> None:
    source = {"prices": 20}
    config = CacheConfig(ttls=source)
    source["prices"] = 1
    assert config.ttls["prices"] == 20
    with pytest.raises(TypeError):
        config.ttls["prices"] = 5  # type: ignore[index]
