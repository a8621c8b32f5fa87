"""The outbox relay: unsent rows → the stream, with the event ids chosen at write time.

One batch is: claim up to ``batch_size`` unsent rows (oldest first, none another relay holds),
publish their events in one round trip through the producer, mark them sent. Every failure
leaves rows unsent, never lost:

* the publish fails (Redis down, timeout): the rows are released with the error and an
  attempt counted; the next batch sends the *same* events again (same ``event_id``);
* the relay dies after the publish, before the mark: the rows are still unsent, so the next
  relay publishes them again: a duplicate with the same ``event_id``, which consumers apply
  harmlessly (an invalidation applied twice is applied once);
* a row holds no valid event (edited by hand, a namespace since unregistered): it is set
  aside as failed with the reason, logged, and counted; it never blocks the others.

Invalidations commute, so batches of several relays may reach the stream in any order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from cachebus.contracts.errors import (
    BackendUnavailable,
    ConfigError,
    ContractError,
    OutboxError,
    PublishError,
)
from cachebus.contracts.events import Event
from cachebus.core._tasks import cancel_and_wait
from cachebus.producers._core import MAX_EVENTS_PER_ROUND_TRIP
from cachebus.producers.outbox.base import OutboxRow, OutboxStore, now_ms

__all__ = ["OutboxRelay", "Publisher", "RelayConfig", "RelayStats"]

log = logging.getLogger("cachebus.outbox")


class Publisher(Protocol):
    """What the relay publishes through: :class:`cachebus.producers.Producer` is one."""

    async def publish_many(self, events: Iterable[Event]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class RelayConfig:
    #: Rows per batch: one claim, one publish round trip, one mark.
    batch_size: int = 100
    #: How long an idle relay waits before looking again (PostgreSQL wakes it on NOTIFY).
    poll_interval_s: float = 0.1
    #: Backoff after a failed batch (seconds, doubled up to the cap).
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 5.0
    #: Delete rows sent longer ago than this (seconds); None keeps them.
    purge_sent_after_s: float | None = 24 * 3600.0
    purge_interval_s: float = 60.0
    #: ``stop()``: time given to the batch in flight before it is cancelled.
    grace_period_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_EVENTS_PER_ROUND_TRIP:
            raise ConfigError(
                f"batch_size must be 1-{MAX_EVENTS_PER_ROUND_TRIP} (one publish round trip), "
                f"got {self.batch_size}"
            )
        if self.poll_interval_s <= 0 or self.backoff_base_s <= 0:
            raise ConfigError("poll_interval_s and backoff_base_s must be positive")


@dataclass(slots=True)
class RelayStats:
    batches: int = 0
    published: int = 0
    failed_rows: int = 0
    publish_errors: int = 0
    database_errors: int = 0
    purged: int = 0


class OutboxRelay:
    """Moves one outbox stream's rows to Redis until :meth:`stop`."""

    def __init__(
        self, store: OutboxStore, publisher: Publisher, config: RelayConfig | None = None
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.config = config or RelayConfig()
        self.stats = RelayStats()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: Set by stop(): an idle relay wakes at once instead of at the end of its poll.
        self._stop_requested: asyncio.Event | None = None
        self._next_purge = 0.0

    async def relay_once(self) -> int:
        """One batch; returns the rows it handled (0: nothing to do).

        Raises :class:`PublishError` (rows released for the next try) or
        :class:`OutboxError` (the database failed; rows stay unsent).
        """
        claim = await self.store.claim(self.config.batch_size)
        if claim is None:
            return 0
        good: list[tuple[OutboxRow, Event]] = []
        bad: list[int] = []
        reasons: list[str] = []
        for row in claim.rows:
            try:
                good.append((row, self.store.decode(row)))
            except ContractError as exc:
                bad.append(row.row_id)
                reasons.append(f"row {row.row_id} (event {row.event_id}): {exc}")
        if bad:
            await self.store.mark_failed(claim, bad, "; ".join(reasons))
            self.stats.failed_rows += len(bad)
            log.error("outbox rows set aside, they can never be published: %s", reasons)
        try:
            entry_ids = await self.publisher.publish_many([event for _, event in good])
        except BaseException as exc:
            self.stats.publish_errors += 1
            await self.store.release(claim, f"{type(exc).__name__}: {exc}")
            raise
        await self.store.mark_sent(
            claim,
            [(row.row_id, entry_id) for (row, _), entry_id in zip(good, entry_ids, strict=True)],
        )
        self.stats.batches += 1
        self.stats.published += len(good)
        return len(claim.rows)

    async def run(self, *, until_empty: bool = False) -> None:
        """Relay until :meth:`stop` (or, with ``until_empty``, until no row is left)."""
        self._task = asyncio.current_task()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        delay = self.config.backoff_base_s
        try:
            while not self._stopping:
                try:
                    handled = await self.relay_once()
                    await self._maybe_purge()
                except (PublishError, BackendUnavailable) as exc:
                    log.warning("outbox publish failed, rows kept for the next try: %s", exc)
                except OutboxError as exc:
                    self.stats.database_errors += 1
                    log.warning("outbox database failed, rows stay unsent: %s", exc)
                else:
                    delay = self.config.backoff_base_s
                    if handled == 0:
                        if until_empty:
                            return
                        await self._idle(self.config.poll_interval_s)
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_cap_s)
        finally:
            self._task = None

    async def stop(self) -> None:
        """Finish the batch in flight (within the grace period), then stop. Idempotent."""
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=self.config.grace_period_s)
        if not done:
            # Its rows stay unsent; the next relay publishes them again.
            await cancel_and_wait(task, within=self.config.grace_period_s)

    async def _idle(self, seconds: float) -> None:
        """Wait for new rows (or ``seconds``), but return at once when asked to stop: an idle
        PostgreSQL relay waits seconds for a NOTIFY, longer than a stop may take."""
        assert self._stop_requested is not None
        rows = asyncio.ensure_future(self.store.wait_for_rows(seconds))
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({rows, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(rows)
            await cancel_and_wait(stop)

    async def _maybe_purge(self) -> None:
        after = self.config.purge_sent_after_s
        if after is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.config.purge_interval_s
        self.stats.purged += await self.store.purge_sent(now_ms() - int(after * 1000))
