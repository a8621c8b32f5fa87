"""CacheConfig refuses nonsense with a message that says what is required."""

from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import DEFAULT_TTL_SECONDS, TTLClass
from cachebus.core import CacheConfig


def test_defaults_are_the_audits_ttls() -> None:
    config = CacheConfig()
    assert dict(config.ttls) == {
        TTLClass.PRICES: 20,
        TTLClass.POSITIONS: 30,
        TTLClass.MARKETS: 300,
        TTLClass.USER_DATA: 3600,
    }
    assert config.compress_threshold == 1024 and config.scan_count == 1000


def test_a_missing_ttl_class_is_named() -> None:
    ttls = {k: v for k, v in DEFAULT_TTL_SECONDS.items() if k is not TTLClass.PRICES}
    with pytest.raises(ConfigError, match="lacks a TTL for prices"):
        CacheConfig(ttls=ttls)


def test_a_zero_ttl_is_refused() -> None:
    with pytest.raises(ConfigError, match="whole seconds >= 1"):
        CacheConfig(ttls={**DEFAULT_TTL_SECONDS, TTLClass.MARKETS: 0})


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
    source = dict(DEFAULT_TTL_SECONDS)
    config = CacheConfig(ttls=source)
    source[TTLClass.PRICES] = 1
    assert config.ttls[TTLClass.PRICES] == 20
    with pytest.raises(TypeError):
        config.ttls[TTLClass.PRICES] = 5  # type: ignore[index]
