"""A circuit breaker in front of Redis: an outage slows a service down instead of breaking it.

Closed: every call goes to Redis. After ``failures`` consecutive unavailable errors (no success
in between) within ``window`` seconds it opens: for ``cooldown`` seconds nothing is sent, so
callers do not each wait out a socket timeout. Then it is half-open: exactly one call (the
probe) goes through; its success closes the breaker, its failure opens it again.

What callers do while it is open is their policy (the cache turns reads into misses and writes
into no-ops, and raises on invalidations); this module only answers "may I call Redis now?".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from cachebus.core.config import BreakerConfig

__all__ = ["BreakerState", "CircuitBreaker"]

logger = logging.getLogger("cachebus.core.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; shared by every call of one cache object."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        name: str = "redis",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or BreakerConfig()
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._first_failure = 0.0
        self._opened_at = 0.0
        self._probe_out = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._advance()
            return self._state

    def _advance(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.cooldown
        ):
            self._state = BreakerState.HALF_OPEN
            self._probe_out = False

    def allow(self) -> bool:
        """Whether a call may go to Redis now. A True in half-open state makes it the probe:
        the caller must then report :meth:`success` or :meth:`failure`."""
        with self._lock:
            self._advance()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return True
            return False

    def retry_in(self) -> float:
        """Seconds until the next probe may go (0 when closed)."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.config.cooldown - (self._clock() - self._opened_at))

    def abandon(self) -> None:
        """A call let through ended without telling whether Redis works (cancelled, bad
        input): free the probe slot so the next call can probe."""
        with self._lock:
            self._probe_out = False

    def success(self) -> None:
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                logger.warning("circuit %s closed: Redis answers again", self.name)
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probe_out = False

    def failure(self) -> None:
        with self._lock:
            now = self._clock()
            if self._state is BreakerState.HALF_OPEN:
                self._open(now)
                return
            if self._state is BreakerState.OPEN:
                return
            if self._failures == 0 or now - self._first_failure > self.config.window:
                self._failures = 0
                self._first_failure = now
            self._failures += 1
            if self._failures >= self.config.failures:
                self._open(now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_out = False
        self._failures = 0
        self.opened_count += 1
        logger.warning(
            "circuit %s open for %.1fs after repeated Redis failures: reads are misses, "
            "writes are skipped, invalidations raise CircuitOpenError",
            self.name,
            self.config.cooldown,
        )
