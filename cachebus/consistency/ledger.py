"""The check's books: what was written and published, what the consumer applied, and when.

The consumer (in this process or another) appends to a log file, one line per batch:
``R <ms>`` (reading), ``A <ms> <event_id>...`` (applied to the cache), ``F <ms> <reason>
<namespaces>`` (flushed). Wall-clock milliseconds, one machine, so they compare with the
``created_at_ms`` of the events.

An event is *done* at its first application, or at the first flush of its namespace after it
was created (a flush makes every older value invisible and voids the fills in flight). An
event that is never done is *lost*.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cachebus.bench._report import percentile

__all__ = ["ApplyLog", "Ledger", "Lags"]


@dataclass(slots=True)
class ApplyLog:
    """The consumer's log file, read incrementally."""

    path: Path
    applied: dict[str, int] = field(default_factory=dict)
    flushes: list[tuple[int, str, frozenset[str]]] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    _offset: int = 0

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self._offset += end
        for line in data[:end].decode().splitlines():
            self._parse(line.split())

    def _parse(self, parts: list[str]) -> None:
        if not parts:
            return
        kind, at = parts[0], int(parts[1])
        if kind == "A":
            for event_id in parts[2:]:
                self.applied.setdefault(event_id, at)
        elif kind == "F":
            namespaces = frozenset(parts[3].split(",")) if len(parts) > 3 else frozenset()
            self.flushes.append((at, parts[2], namespaces))
        elif kind == "R":
            self.ready.append(at)


@dataclass(frozen=True, slots=True)
class Lags:
    done: dict[str, int]  # event id -> ms from creation to done
    covered_by_flush: int
    lost: tuple[str, ...]


class Ledger:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        #: event id -> created_at_ms, for every event whose publish (or outbox commit) succeeded.
        self.events: dict[str, int] = {}
        #: per item: (commit ms, version), in commit order.
        self.history: dict[str, list[tuple[int, int]]] = {}
        self.writes = 0
        self.unpublished = 0
        self.reads: list[tuple[str, int, int]] = []  # (id, version read, read start ms)

    def committed(self, ident: str, version: int, at_ms: int) -> None:
        self.history.setdefault(ident, []).append((at_ms, version))

    def published(self, event_id: str, created_ms: int) -> None:
        self.events[event_id] = created_ms

    def read(self, ident: str, version: int, at_ms: int) -> None:
        self.reads.append((ident, version, at_ms))

    # ---- verdicts ------------------------------------------------------------------------
    def lags(self, log: ApplyLog) -> Lags:
        flush_times = sorted(at for at, _, ns in log.flushes if not ns or self.namespace in ns)
        done: dict[str, int] = {}
        by_flush = 0
        lost: list[str] = []
        for event_id, created in self.events.items():
            applied = log.applied.get(event_id)
            i = bisect.bisect_left(flush_times, created)
            flushed = flush_times[i] if i < len(flush_times) else None
            ends = [t for t in (applied, flushed) if t is not None]
            if not ends:
                lost.append(event_id)
                continue
            end = min(ends)
            by_flush += int(applied is None or (flushed is not None and flushed < applied))
            done[event_id] = max(0, end - created)
        return Lags(done, by_flush, tuple(lost))

    def pending(self, log: ApplyLog) -> int:
        """Events not done yet (the quiescence loop waits for 0)."""
        return len(self.lags(log).lost)

    def stale_reads_over(self, window_ms: int) -> int:
        """Reads that returned a version older than one committed ``window_ms`` before them."""
        stale = 0
        times = {ident: [at for at, _ in h] for ident, h in self.history.items()}
        for ident, version, at in self.reads:
            history = self.history.get(ident)
            if not history:
                continue
            i = bisect.bisect_right(times[ident], at - window_ms)
            if i and history[i - 1][1] > version:
                stale += 1
        return stale


def share_within(lags: Iterable[int], bound_ms: int) -> float | None:
    values = list(lags)
    if not values:
        return None
    return sum(1 for lag in values if lag <= bound_ms) / len(values)


def lag_percentiles(lags: Iterable[int]) -> tuple[float, float, float]:
    values = [float(v) for v in lags]
    if not values:
        return 0.0, 0.0, 0.0
    return percentile(values, 50), percentile(values, 99), max(values)


def flush_counts(log: ApplyLog) -> dict[str, int]:
    return dict(Counter(reason for _, reason, _ in log.flushes))
