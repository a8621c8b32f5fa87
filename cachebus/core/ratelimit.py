"""A rate limit on deletes, so an invalidation storm cannot monopolise the cache Redis.

UNLINK frees memory in the background, but finding and unlinking keys is still work on
Redis's single thread: a burst of pattern invalidations (or a buggy producer) could keep it
busy for everyone else. With ``CacheConfig.max_deletes_per_second`` set, invalidation steps
reserve their deletes here before each UNLINK and yield a :class:`~cachebus.core._io.Pause` for
the wait, so the async facade sleeps without blocking its event loop and the sync one sleeps
its thread. Flushes are never paced: a generation bump is one command, whatever the size.

The limit is a token bucket with debt (GCRA): up to ``burst`` deletes go at once, after which
they go out at ``rate`` per second on average. A reservation larger than the bucket is
allowed and paid for by waiting, so a batch is never split or refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachebus.contracts.errors import ConfigError

__all__ = ["DeleteRateLimiter"]


class DeleteRateLimiter:
    """At most ``rate`` deletes per second on average, bursts of up to ``burst``.

    Safe to share between threads and tasks: a reservation is a few arithmetic operations
    under a lock, and the waiting happens outside it.
    """

    __slots__ = ("_clock", "_last", "_lock", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ConfigError(f"max_deletes_per_second must be positive, got {rate}")
        if burst < 1:
            raise ConfigError(f"delete_burst must be at least 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self, count: int) -> float:
        """Take ``count`` deletes; the seconds to wait before sending them (0.0: go now)."""
        if count <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= count
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def __repr__(self) -> str:
        return f"DeleteRateLimiter(rate={self.rate:g}/s, burst={self.burst})"
