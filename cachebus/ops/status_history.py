"""What the status page plots and lists over the last minutes: throughput, publish->apply
latency, and the flush timeline with reasons.

Two feeds, one history:

* polling Redis (:meth:`StatusHistory.observe_status`, every couple of seconds, wherever the
  page is served): events published (the stream's ``entries-added``) and applied (the counters
  every member keeps in Redis) per second, and each group's last flush as its members recorded
  it (reason and time, from the group meta hash);
* the sidecar's own consumer (:class:`HistoryObserver`): the publish->apply latency of each
  event it applies (its ``created_at_ms`` to the moment it was applied), its flushes with their
  detail, and the flush events operators publish (``cachebus publish NS --flush --reason ...``).

Memory is bounded: ``window_s`` of ``bucket_s`` buckets, and the last ``max_flushes`` marks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cachebus.consumers.config import FlushReason
from cachebus.consumers.observe import ConsumerObserver
from cachebus.consumers.plan import Delivered

if TYPE_CHECKING:
    from cachebus.ops.status import StreamStatus

__all__ = ["Bucket", "FlushMark", "HistoryObserver", "StatusHistory"]

#: Two flushes of one group for one reason this close are one flush seen by both feeds.
_SAME_FLUSH_MS = 2000


@dataclass(frozen=True, slots=True)
class FlushMark:
    at_ms: int
    group: str
    reason: str
    #: ``consumer``: the group flushed its scope; ``published``: a flush event was applied.
    source: str
    namespaces: tuple[str, ...] = ()
    detail: str = ""


@dataclass(slots=True)
class Bucket:
    start_ms: int
    published: int = 0
    applied: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    #: The time the counts span: the intervals since the previous poll of the polls that
    #: landed here (a bucket in progress, or one the page began in, spans less than its length).
    covered_ms: int = 0

    def latency(self, quantile: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


class StatusHistory:
    """Rolling per-bucket counts and latencies, and the recent flushes."""

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        bucket_s: float = 10.0,
        max_flushes: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_ms = int(window_s * 1000)
        self.bucket_ms = int(bucket_s * 1000)
        self._clock = clock
        self._buckets: deque[Bucket] = deque()
        self._flushes: deque[FlushMark] = deque(maxlen=max_flushes)
        self._totals: dict[str, tuple[int, int]] = {}  # stream key -> (added, applied)
        self._last_poll_ms: int | None = None
        #: Whether a consumer in this process feeds latencies (the sidecar's page).
        self.measures_latency = False

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _bucket(self, at_ms: int) -> Bucket:
        start = at_ms - at_ms % self.bucket_ms
        if not self._buckets or self._buckets[-1].start_ms < start:
            self._buckets.append(Bucket(start))
        while self._buckets and self._buckets[0].start_ms <= at_ms - self.window_ms:
            self._buckets.popleft()
        for bucket in reversed(self._buckets):
            if bucket.start_ms <= at_ms:
                return bucket
        return self._buckets[0]

    # ---- feeds ------------------------------------------------------------------------------
    def applied_latencies(self, latencies_ms: Sequence[float]) -> None:
        self.measures_latency = True
        self._bucket(self.now_ms()).latencies_ms.extend(latencies_ms)

    def flushed(self, mark: FlushMark) -> None:
        for seen in self._flushes:
            if (
                seen.group == mark.group
                and seen.reason == mark.reason
                and seen.source == mark.source
                and abs(seen.at_ms - mark.at_ms) < _SAME_FLUSH_MS
            ):
                return
        self._flushes.append(mark)

    def observe_status(self, statuses: Sequence[StreamStatus]) -> None:
        """One poll of ``cachebus status``'s data: counts since the last poll, new flushes."""
        now = self.now_ms()
        if self._last_poll_ms is not None:
            self._bucket(now).covered_ms += max(0, now - self._last_poll_ms)
        self._last_poll_ms = now
        for s in statuses:
            if not s.exists or s.problem:
                # Counted from zero once it appears: a new stream's first events are not lost.
                self._totals.setdefault(s.key, (0, 0))
                continue
            applied = sum(int(g.counters.get("totals", {}).get("applied", 0)) for g in s.groups)
            before = self._totals.get(s.key)
            self._totals[s.key] = (s.entries_added, applied)
            if before is not None:
                bucket = self._bucket(now)
                bucket.published += max(0, s.entries_added - before[0])
                bucket.applied += max(0, applied - before[1])
            for g in s.groups:
                if g.last_flush_reason and g.last_flush_age_s is not None:
                    at = now - int(g.last_flush_age_s * 1000)
                    self.flushed(FlushMark(at, g.name, g.last_flush_reason, "consumer"))

    # ---- reads ------------------------------------------------------------------------------
    def buckets(self) -> list[Bucket]:
        """Every bucket of the window, oldest first (empty ones included)."""
        now = self.now_ms()
        self._bucket(now)
        first = now - now % self.bucket_ms - self.window_ms + self.bucket_ms
        have = {b.start_ms: b for b in self._buckets}
        return [have.get(t) or Bucket(t) for t in range(first, now + 1, self.bucket_ms)]

    def throughput(self, buckets: Sequence[Bucket]) -> list[tuple[float | None, float | None]]:
        """Events (published, applied) per second in each of ``buckets``, each count over the
        time its polls spanned: the newest bucket is still filling, and its count over the
        whole bucket would dip at "now". The newest bucket before its first poll is a gap
        (None), not a zero; an older one no poll reached held nothing (0)."""
        rates: list[tuple[float | None, float | None]] = []
        for i, b in enumerate(buckets):
            newest = i == len(buckets) - 1
            if not b.covered_ms:
                rates.append((None, None) if newest else (0.0, 0.0))
                continue
            spanned_s = b.covered_ms / 1000.0
            rates.append((b.published / spanned_s, b.applied / spanned_s))
        return rates

    def flushes(self) -> list[FlushMark]:
        """The recent flushes, newest first."""
        return sorted(self._flushes, key=lambda m: m.at_ms, reverse=True)


class HistoryObserver(ConsumerObserver):
    """Feeds a :class:`StatusHistory` from a consumer in this process."""

    def __init__(self, history: StatusHistory, group: str) -> None:
        self.history = history
        self.group = group
        history.measures_latency = True  # plotted from the start, empty until events flow

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        now = self.history.now_ms()
        self.history.applied_latencies([max(0, now - d.event.created_at_ms) for d in delivered])
        for d in delivered:
            if d.event.kind == "flush":
                self.history.flushed(FlushMark(
                    now, self.group, d.event.reason or "-", "published", (d.event.namespace,),
                    f"by {d.event.producer}",
                ))  # fmt: skip

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        mark = FlushMark(
            self.history.now_ms(), self.group, reason.value, "consumer", tuple(sorted(namespaces)),
            detail,
        )  # fmt: skip
        self.history.flushed(mark)
