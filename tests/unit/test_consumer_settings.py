"""The consumer configuration: one settings object, checked whole before any I/O; timings
that follow from each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachebus.consumers.config import MAX_CLAIM_INTERVAL_S, ConsumerConfig
from cachebus.contracts.errors import ConfigError, RegistryError
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings
from tests.harness.registry import REGISTRY, REGISTRY_FILE


def _config(**overrides: object) -> ConsumerConfig:
    return ConsumerConfig(
        stream="inval", group="svc", namespaces=frozenset({"prices"}), **overrides
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("min_idle_ms", "claim"), [(30_000, 0.5), (1000, 0.5), (600, 0.3), (100, 0.05)]
)
def test_the_claim_interval_follows_min_idle(min_idle_ms: int, claim: float) -> None:
    config = _config(min_idle_ms=min_idle_ms, block_ms=min(1000, min_idle_ms))
    assert config.claim_interval_s == claim and config.claim_interval_s <= MAX_CLAIM_INTERVAL_S
    # A dead member's entries: applied within min_idle + claim interval (+ one batch).
    assert config.claim_bound_s == min_idle_ms / 1000 + claim
    assert config.claim_bound_s <= min_idle_ms / 1000 + 0.5


def test_inconsistent_timings_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"claim_interval_s \(5.0\) must not exceed min_idle_ms"):
        _config(min_idle_ms=1000, claim_interval_s=5.0)  # the 6 s takeover
    with pytest.raises(ConfigError, match=r"min_idle_ms .* must exceed block_ms"):
        _config(min_idle_ms=500, block_ms=1000)
    with pytest.raises(ConfigError, match="housekeeping_interval_s must be positive"):
        _config(housekeeping_interval_s=0)
    with pytest.raises(ConfigError, match="read_count must be at least 1"):
        _config(read_count=0)
    assert _config(min_idle_ms=1000, claim_interval_s=1.0).claim_interval_s == 1.0


def test_settings_build_the_consumer_config_with_the_same_names() -> None:
    settings = CachebusSettings(
        service="bot", namespaces=["prices"], claim_interval_s=0.25, read_count=7,
        min_idle_ms=2000, housekeeping_interval_s=1.5, consumer="bot-9",
    )  # fmt: skip
    config = settings.consumer_config(REGISTRY)
    assert (config.group, config.consumer, config.read_count) == ("bot", "bot-9", 7)
    assert (config.claim_interval_s, config.housekeeping_interval_s) == (0.25, 1.5)


def test_the_service_namespaces_default_to_the_registry_readers() -> None:
    config = CachebusSettings(service="indexer").consumer_config(REGISTRY)
    assert config.namespaces == {"market", "prices"}
    with pytest.raises(ConfigError, match="caches no namespace"):
        CachebusSettings(service="nobody").consumer_config(REGISTRY)


def test_a_namespace_missing_from_the_registry_is_refused_naming_the_file() -> None:
    settings = CachebusSettings(service="web", namespaces=["products", "prices"])
    with pytest.raises(ConfigError) as caught:
        settings.consumer_config(REGISTRY)
    assert "'products' is not registered in" in str(caught.value)
    assert str(REGISTRY_FILE) in str(caught.value)


def test_the_registry_comes_from_the_setting_and_its_errors_are_the_files(
    tmp_path: Path,
) -> None:
    settings = CachebusSettings(service="bot", registry=REGISTRY_FILE)
    assert settings.load_registry().fingerprint == REGISTRY.fingerprint
    bad = tmp_path / "cachebus.toml"
    bad.write_text('[namespaces.a]\nkey = "{a"\nttl_s = 1\n')
    with pytest.raises(RegistryError, match=r"cachebus.toml:2: .* \(rule registry.template\)"):
        CachebusSettings(service="bot", registry=bad).consumer_config()


def test_a_refused_service_configuration_raises_before_any_client_exists() -> None:
    for settings, says in (
        (CachebusSettings(service="bot", namespaces=["nope"]), "'nope' is not registered"),
        (CachebusSettings(service="bot", partitions=2, partition=2), "partition 2 does not"),
        (CachebusSettings(service="bot", broadcast=True, partitions=2), "broadcast"),
        (CachebusSettings(service="bot", redis_url="http://x"), "redis://"),  # type: ignore[arg-type]
        (CachebusSettings(service="bot", min_idle_ms=1000, claim_interval_s=2), "claim_interval_s"),
    ):
        with pytest.raises(ValueError, match=says):
            ConsumerService(settings, registry=REGISTRY)
    with pytest.raises(ValueError, match="health_port"):  # pydantic's: a ValidationError
        CachebusSettings(service="bot", health_port=70_000)


@pytest.mark.parametrize(
    "names", [{"prices", "positions"}, ["prices", "positions"], ("prices", "positions")]
)
def test_namespaces_are_any_collection_of_names_kept_as_a_frozenset(names: object) -> None:
    config = ConsumerConfig("inval", "svc", namespaces=names)  # type: ignore[arg-type]
    assert config.namespaces == frozenset({"prices", "positions"})
    assert isinstance(config.namespaces, frozenset)


def test_one_name_alone_is_refused_rather_than_split_into_letters() -> None:
    with pytest.raises(ConfigError, match=r"namespaces=\{'prices'\}"):
        ConsumerConfig("inval", "svc", namespaces="prices")
