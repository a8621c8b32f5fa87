from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError
from cachebus.core.connection import RedisSettings, redact_url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "required"),
        ("http://localhost:6379", "scheme 'http'"),
        ("localhost:6379", "scheme"),
        ("redis://:6379/0", "names no host"),
        ("redis://localhost:port/0", "malformed"),
        ("redis://localhost:6379/abc", "not a number"),
    ],
)
def test_wrong_urls_get_a_clear_config_error(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RedisSettings.from_url(url)


def test_password_never_shows_in_repr_or_errors() -> None:
    settings = RedisSettings.from_url("redis://app:s3cr3t-pw@localhost:6379/0")
    assert "s3cr3t-pw" not in repr(settings)
    assert "s3cr3t-pw" not in settings.redacted_url
    assert settings.redacted_url == "redis://app:***@localhost:6379/0"
    with pytest.raises(ConfigError) as info:
        RedisSettings.from_url("http://app:s3cr3t-pw@localhost:6379/0")
    assert "s3cr3t-pw" not in str(info.value)


def test_redact_leaves_urls_without_password_alone() -> None:
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_command_bound_accounts_for_every_attempt() -> None:
    settings = RedisSettings.from_url(
        "redis://localhost",
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
        pool_timeout=0.5,
        retries=2,
        retry_backoff_base=0.1,
        retry_backoff_cap=0.15,
    )
    # 3 attempts x (0.5 + 0.5 + 1.0) + backoff 0.1 + 0.15
    assert settings.max_command_seconds == pytest.approx(6.25)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ConfigError, match="retries"):
        RedisSettings.from_url("redis://localhost", retries=-1)
    with pytest.raises(ConfigError, match="max_connections"):
        RedisSettings.from_url("redis://localhost", max_connections=0)
