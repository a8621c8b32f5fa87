"""The delete rate limit: a burst goes at once, then deletes are paced at the rate."""

from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError
from cachebus.core import CacheConfig
from cachebus.core.ratelimit import DeleteRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_each_batch_waits_its_share() -> None:
    clock = Clock()
    limiter = DeleteRateLimiter(1000, 500, clock=clock)
    assert limiter.reserve(500) == 0.0
    assert limiter.reserve(250) == pytest.approx(0.25)
    assert limiter.reserve(250) == pytest.approx(0.5)  # queued behind the previous batch
    clock.now += 0.5
    assert limiter.reserve(0) == 0.0
    assert limiter.reserve(100) == pytest.approx(0.1)


def test_idle_time_refills_the_bucket_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = DeleteRateLimiter(100, 50, clock=clock)
    limiter.reserve(50)
    clock.now += 3600
    assert limiter.reserve(50) == 0.0
    assert limiter.reserve(10) == pytest.approx(0.1)


def test_a_batch_larger_than_the_burst_is_allowed_and_paid_for_by_waiting() -> None:
    limiter = DeleteRateLimiter(1000, 100, clock=Clock())
    assert limiter.reserve(2100) == pytest.approx(2.0)


def test_bad_limits_are_refused_with_the_rule() -> None:
    with pytest.raises(ConfigError, match="max_deletes_per_second"):
        CacheConfig(max_deletes_per_second=0)
    with pytest.raises(ConfigError, match="delete_burst"):
        CacheConfig(max_deletes_per_second=10, delete_burst=0)
    with pytest.raises(ConfigError):
        DeleteRateLimiter(-1, 10)
    assert CacheConfig(max_deletes_per_second=2500.5).effective_delete_burst == 2500
    assert CacheConfig(max_deletes_per_second=0.5).effective_delete_burst == 1
