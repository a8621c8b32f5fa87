"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from cachebus.contracts.errors import ConfigError
from cachebus.core import BreakerConfig
from cachebus.core.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    failures: int = 3, window: float = 10.0, cooldown: float = 5.0
) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(BreakerConfig(failures, window, cooldown), clock=clock), clock


def test_it_opens_after_consecutive_failures_within_the_window() -> None:
    breaker, _ = make()
    for _ in range(2):
        breaker.failure()
        assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()


def test_a_success_in_between_resets_the_count() -> None:
    breaker, _ = make()
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED


def test_failures_spread_beyond_the_window_do_not_open_it() -> None:
    breaker, clock = make(window=1.0)
    for _ in range(5):
        breaker.failure()
        clock.now += 2.0
    assert breaker.state is BreakerState.CLOSED


def test_after_the_cooldown_exactly_one_probe_goes_through() -> None:
    breaker, clock = make()
    for _ in range(3):
        breaker.failure()
    assert breaker.retry_in() == pytest.approx(5.0)
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # the probe is out


def test_a_successful_probe_closes_it_and_a_failed_one_reopens_it() -> None:
    breaker, clock = make()
    for _ in range(3):
        breaker.failure()
    clock.now += 5.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened_count == 2
    clock.now += 5.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_an_abandoned_probe_frees_the_slot_for_the_next_call() -> None:
    breaker, clock = make()
    for _ in range(3):
        breaker.failure()
    clock.now += 5.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(failures=0)
