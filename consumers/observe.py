"""What a consumer counts and reports: stats, health, and hooks for metrics and tracing.

:class:`ConsumerObserver` has no-op hooks; the OpenTelemetry integration subclasses it. A hook
that raises is logged and ignored: observability must never stop invalidations.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cachebus.consumers.config import FlushReason
from cachebus.consumers.entries import StreamState
from cachebus.consumers.plan import Delivered

__all__ = ["CompositeObserver", "ConsumerObserver", "ConsumerStats", "Health", "ReadSource"]

log = logging.getLogger("cachebus.consumer")

ReadSource = Literal["new", "pending", "claimed"]


@dataclass(slots=True)
class ConsumerStats:
    read: int = 0
    applied: int = 0
    acked: int = 0
    redelivered: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    decode_errors: int = 0
    apply_failures: int = 0
    foreign_skipped: int = 0
    trimmed_pending: int = 0
    backend_errors: int = 0
    flushes: Counter[str] = field(default_factory=Counter)
    last_flush_reason: str | None = None
    last_flush_at: float | None = None
    members_removed: int = 0
    trimmed_by_retention: int = 0
    #: Events whose producer's registry fingerprint differs from ours (see drift.py).
    drifted: int = 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "flushes"
        }
        out["flushes"] = dict(self.flushes)
        return out


@dataclass(frozen=True, slots=True)
class Health:
    live: bool
    ready: bool
    connected: bool
    group_present: bool
    pending_drained: bool
    lag: int | None
    pending: int | None
    reasons: tuple[str, ...]
    last_heartbeat_age_s: float


class ConsumerObserver:
    """Override what you need. Hooks run inline: keep them cheap.

    Times are ``time.monotonic()`` seconds. Order for one batch: ``on_read`` (right after the
    round trip), ``on_received`` (once decoded), then ``on_applied``/``on_dead_letter``/
    ``on_flush`` as they happen, then ``on_acked``.
    """

    def on_read(self, source: ReadSource, count: int, state: StreamState | None) -> None: ...

    def on_received(
        self,
        source: ReadSource,
        count: int,
        delivered: Sequence[Delivered],
        started: float,
        ended: float,
    ) -> None:
        """A batch of ``count`` entries was read (between ``started`` and ``ended``) and
        decoded; ``delivered`` are those for this consumer's namespaces (in stream order)."""

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None: ...

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None: ...

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None: ...

    def on_dead_letter(self, entry_id: str, reason: str, deliveries: int) -> None: ...

    def on_backend_error(self, error: Exception) -> None: ...

    def on_drift(self, producer: str, namespace: str, theirs: str, ours: str) -> None:
        """An event of ``producer`` carried fingerprint ``theirs`` for ``namespace``; this
        consumer's registry has ``ours`` (called per event; the log line comes once)."""


class CompositeObserver(ConsumerObserver):
    """Several observers as one (tracing and metrics, say), called in order.

    Each hook of each observer is isolated: one that raises is logged and the others still run.
    """

    def __init__(self, *observers: ConsumerObserver) -> None:
        self.observers = tuple(observers)

    def on_read(self, source: ReadSource, count: int, state: StreamState | None) -> None:
        for observer in self.observers:
            safe_call(observer, "on_read", source, count, state)

    def on_received(
        self,
        source: ReadSource,
        count: int,
        delivered: Sequence[Delivered],
        started: float,
        ended: float,
    ) -> None:
        for observer in self.observers:
            safe_call(observer, "on_received", source, count, delivered, started, ended)

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        for observer in self.observers:
            safe_call(observer, "on_applied", delivered, started, ended)

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None:
        for observer in self.observers:
            safe_call(observer, "on_acked", ids, started, ended)

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        for observer in self.observers:
            safe_call(observer, "on_flush", reason, namespaces, detail)

    def on_dead_letter(self, entry_id: str, reason: str, deliveries: int) -> None:
        for observer in self.observers:
            safe_call(observer, "on_dead_letter", entry_id, reason, deliveries)

    def on_backend_error(self, error: Exception) -> None:
        for observer in self.observers:
            safe_call(observer, "on_backend_error", error)

    def on_drift(self, producer: str, namespace: str, theirs: str, ours: str) -> None:
        for observer in self.observers:
            safe_call(observer, "on_drift", producer, namespace, theirs, ours)


def safe_call(observer: ConsumerObserver, hook: str, *args: object) -> None:
    try:
        getattr(observer, hook)(*args)
    except Exception:  # an observer bug must not stop invalidations
        log.exception("observer hook %s failed", hook)


def monotonic() -> float:
    return time.monotonic()
