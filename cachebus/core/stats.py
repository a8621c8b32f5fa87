"""Counters and latency of one cache object, for health checks and metrics."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, fields

__all__ = ["CacheStats", "LatencyWindow"]


class LatencyWindow:
    """The last ``size`` round-trip times (seconds); percentiles over that window."""

    __slots__ = ("_lock", "_samples")

    def __init__(self, size: int = 2048) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        self._samples.append(seconds)  # deque.append is atomic under the GIL

    def __len__(self) -> int:
        return len(self._samples)

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile in milliseconds (nearest rank), or None without samples."""
        with self._lock:
            ordered = sorted(self._samples)
        if not ordered:
            return None
        rank = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000.0


@dataclass(slots=True)
class CacheStats:
    """What one cache object did since it was created. Counters only grow.

    ``corrupt``, ``oversize``, ``unknown_codec`` and ``unknown_dictionary`` are reads whose
    value could not be used: each is also a miss. ``stale`` are values from an older
    namespace generation (after a flush), also misses; ``invalid`` are hits a typed read
    could not validate into its type (the caller gets a miss; ``get_or_set`` loads again).
    ``degraded_reads``/``skipped_writes``
    are reads turned into misses and writes dropped because Redis was unavailable or the
    breaker was open; ``rejected_invalidations`` were refused with ``CircuitOpenError``.
    ``unstorable`` are values a ``get_or_set`` loader returned that the codec refused (over
    ``max_value_bytes`` or not serializable): returned to the caller, not cached.
    ``delete_waits``/``delete_wait_ms`` count the pauses the delete rate limit imposed.
    """

    hits: int = 0
    misses: int = 0
    sets: int = 0
    invalidations: int = 0
    pattern_invalidations: int = 0
    escalations: int = 0
    flushes: int = 0
    corrupt: int = 0
    oversize: int = 0
    unknown_codec: int = 0
    unknown_dictionary: int = 0
    stale: int = 0
    invalid: int = 0
    loads: int = 0
    unstorable: int = 0
    lease_waits: int = 0
    lease_timeouts: int = 0
    refused_fills: int = 0
    refreshes: int = 0
    served_while_refreshing: int = 0
    backend_errors: int = 0
    degraded_reads: int = 0
    skipped_writes: int = 0
    rejected_invalidations: int = 0
    delete_waits: int = 0
    delete_wait_ms: int = 0
    latency: LatencyWindow = field(default_factory=LatencyWindow, repr=False, compare=False)

    @property
    def hit_rate(self) -> float | None:
        """Hits over reads, 0.0-1.0; None before the first read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None

    def count(self, name: str, n: int = 1) -> None:
        setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latency"}
