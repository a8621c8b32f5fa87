"""One batch, start to finish: decode, isolate poison, coalesce, apply through sinks, ack.

Failure policy, in one place:

* an entry that cannot be decoded is dead-lettered at once (decoding is deterministic: retrying
  cannot help) and its namespace (or, when unknown, the whole scope) is flushed;
* Redis unreachable while applying (``BackendUnavailable``) is not the event's fault: the plan
  is retried with capped backoff, the entries stay pending (and heartbeated) meanwhile;
* the credentials or the ACL refused (``AccessDenied``): raised at once, no event is at fault;
* any other failure (an OOM cache among them) isolates the events one by one; an event that
  still fails after ``max_deliveries`` attempts (Redis redeliveries included) is
  dead-lettered and its namespace flushed, because skipping an invalidation would leave stale data;
* acks go out in one XACK per batch, shielded from cancellation, and only for entries that were
  applied, ignored as foreign, or dead-lettered; the member's counters (applied, duplicates,
  claimed: :mod:`cachebus.consumers.counters`) go in the same round trip. After a read of new
  entries the runtime does not wait for the XACK's reply (:meth:`BatchProcessor.ack_soon`):
  the next read leaves at once, at most one ack is in flight, and its failure is handled when
  the next batch settles it. Measured with ``cachebus bench e2e`` (5,000 events/s), that
  round trip was a third of the publish → applied p50 over the raw stream's.

Events whose registry fingerprint differs from this member's are reported as drift
(:mod:`cachebus.consumers.drift`) and applied as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from cachebus.consumers.config import ConsumerConfig, FlushReason
from cachebus.consumers.counters import Tally
from cachebus.consumers.drift import DriftMonitor
from cachebus.consumers.entries import Entry, stream_id
from cachebus.consumers.group import StreamGroup
from cachebus.consumers.observe import (
    ConsumerObserver,
    ConsumerStats,
    ReadSource,
    monotonic,
    safe_call,
)
from cachebus.consumers.plan import Delivered, Plan, coalesce, new_delivered
from cachebus.consumers.sinks import Sink
from cachebus.contracts.codec import DecodedEntry, decode_entries
from cachebus.contracts.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    EventDecodeError,
)
from cachebus.core._tasks import cancel_and_wait

__all__ = ["BatchProcessor", "Link"]

log = logging.getLogger("cachebus.consumer")

T = TypeVar("T")
FlushFn = Callable[[frozenset[str], FlushReason, str], Awaitable[None]]


class Link:
    """Where the processor reports reachability, so health sees outages inside retry loops."""

    def stream_down(self, exc: BackendError) -> None: ...

    def stream_up(self) -> None: ...

    def sink_down(self, exc: BackendError) -> None: ...

    def sink_up(self) -> None: ...


class BatchProcessor:
    def __init__(
        self,
        group: StreamGroup,
        config: ConsumerConfig,
        sinks: Sequence[Sink],
        stats: ConsumerStats,
        observer: ConsumerObserver,
        flush: FlushFn,
        stopping: Callable[[], bool],
        link: Link | None = None,
        *,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.group = group
        self.config = config
        self.sinks = tuple(sinks)
        self.stats = stats
        self.observer = observer
        self.flush = flush
        self.stopping = stopping
        self.link = link or Link()
        self.drift = drift
        #: Counts since the last ack, sent to Redis with the next one.
        self.tally = Tally(config.dedupe_window)
        self.max_seen: tuple[int, int] = (0, 0)
        self._acks: set[asyncio.Task[Any]] = set()
        self._ack_in_flight: asyncio.Task[None] | None = None

    async def process(
        self,
        entries: Sequence[Entry],
        source: ReadSource,
        read: tuple[float, float] | None = None,
        *,
        ack_later: bool = False,
    ) -> int:
        """Handle ``entries``; returns how many were acked (with ``ack_later``: sent to be).

        ``read``: when the round trip that returned them started and ended (monotonic), for
        the observer's ``on_received``; defaults to now. ``ack_later``: send the XACK and
        return without waiting for its reply (see :meth:`ack_soon`).
        """
        if not entries:
            return 0
        self.stats.read += len(entries)
        if source != "new":
            self.stats.redelivered += sum(1 for e in entries if e.deliveries > 1)
            if source == "claimed":
                self.tally.claimed += len(entries)
        last = stream_id(entries[-1].id)
        if last > self.max_seen:
            self.max_seen = last
        settled: list[str] = []
        trimmed = [e.id for e in entries if not e.fields]
        if trimmed:
            self.stats.trimmed_pending += len(trimmed)
            await self.flush(
                frozenset(self.config.namespaces),
                FlushReason.TRIMMED,
                f"{len(trimmed)} pending entries trimmed",
            )
            settled += trimmed
        live = [e for e in entries if e.fields] if trimmed else list(entries)
        results = decode_entries(live)
        mine = self.config.namespaces
        delivered: list[Delivered] = []
        deliver = delivered.append
        undecodable: list[tuple[Entry, EventDecodeError]] = []
        for entry, decoded in zip(live, results, strict=True):
            if type(decoded) is not DecodedEntry:
                assert isinstance(decoded, EventDecodeError)
                undecodable.append((entry, decoded))
                continue
            event = decoded.event
            if event.namespace not in mine:
                self.stats.foreign_skipped += 1
                settled.append(entry.id)
                continue
            deliver(
                new_delivered((entry.id, event, decoded.headers, entry.deliveries, entry.fields))
            )
        started, ended = read or (monotonic(), monotonic())
        safe_call(self.observer, "on_received", source, len(entries), delivered, started, ended)
        if self.drift is not None and delivered:
            await self.drift.check(delivered)
        for entry, error in undecodable:
            self.stats.decode_errors += 1
            await self._dead_letter(
                entry, f"decode:{error.rule}", str(error), _guess_namespace(entry)
            )
        fresh = delivered
        if source != "new":  # a crash loop shows as deliveries piling up on redelivered entries
            limit = self.config.max_deliveries
            for d in delivered:
                if d.deliveries > limit:
                    await self._dead_letter_delivered(
                        d, "max_deliveries", "delivered too many times"
                    )
            fresh = [d for d in delivered if d.deliveries <= limit]
        settled += await self._apply_counted(fresh, redelivered=source != "new")
        await (self.ack_soon if ack_later else self.ack)(settled)
        return len(settled)

    async def _apply_counted(self, fresh: list[Delivered], *, redelivered: bool) -> list[str]:
        """Apply, and count what was applied for the next ack's counters."""
        applied = await self._apply(fresh)
        if applied:
            if len(applied) < len(fresh):
                done = set(applied)
                fresh = [d for d in fresh if d.entry_id in done]
            self.tally.add_applied(fresh, redelivered=redelivered)
        return applied

    # ---- applying ---------------------------------------------------------------------
    async def _apply(self, delivered: list[Delivered]) -> list[str]:
        if not delivered:
            return []
        ids = [d.entry_id for d in delivered]
        plan = coalesce(delivered)
        async with self._heartbeat(ids):
            try:
                if not await self._apply_with_retry(plan):
                    return []  # stopping: leave them pending for our next start
            except AccessDenied:
                raise  # the configuration is wrong: no event is at fault
            except Exception as exc:  # a sink's failure: isolate the event(s) at fault
                log.warning("applying a batch of %d failed (%r); isolating events", len(ids), exc)
                return await self._isolate(delivered)
        self.stats.applied += len(delivered)
        return ids

    async def _apply_with_retry(self, plan: Plan) -> bool:
        delay = self.config.backoff_base_s
        while True:
            started = monotonic()
            try:
                for sink in self.sinks:
                    await sink.apply(plan)
            except BackendUnavailable as exc:
                self.stats.backend_errors += 1
                safe_call(self.observer, "on_backend_error", exc)
                self.link.sink_down(exc)
                if self.stopping():
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_cap_s)
                continue
            self.link.sink_up()
            safe_call(self.observer, "on_applied", plan.delivered, started, monotonic())
            return True

    async def _isolate(self, delivered: list[Delivered]) -> list[str]:
        done: list[str] = []
        for d in delivered:
            attempts = d.deliveries - 1
            while True:
                try:
                    if not await self._apply_with_retry(coalesce([d])):
                        break
                except AccessDenied:
                    raise
                except Exception as exc:  # the sink refuses this event
                    attempts += 1
                    self.stats.apply_failures += 1
                    if attempts >= self.config.max_deliveries:
                        await self._dead_letter_delivered(d, "apply", repr(exc), attempts)
                        break
                    await asyncio.sleep(min(self.config.backoff_base_s * 2**attempts, 1.0))
                    continue
                self.stats.applied += 1
                done.append(d.entry_id)
                break
        return done

    @contextlib.asynccontextmanager
    async def _heartbeat(self, ids: list[str]) -> AsyncIterator[None]:
        """Keep our entries ours while a slow apply runs (resets their idle time)."""
        interval = self.config.min_idle_ms / 3000.0

        async def beat() -> None:
            while True:
                try:
                    await self.group.heartbeat(ids)
                except BackendError as exc:  # the entries stay ours; replay after the batch
                    self.link.stream_down(exc)
                await asyncio.sleep(interval)

        # Most applies end long before the first beat is due: a timer, not a task, until then.
        loop = asyncio.get_running_loop()
        task: asyncio.Task[None] | None = None

        def start() -> None:
            nonlocal task
            task = loop.create_task(beat())

        timer = loop.call_later(interval, start)
        try:
            yield
        finally:
            timer.cancel()
            if task is not None:
                await cancel_and_wait(task)

    # ---- dead letters ----------------------------------------------------------------
    async def _dead_letter_delivered(
        self, d: Delivered, reason: str, error: str, deliveries: int | None = None
    ) -> None:
        entry = Entry(d.entry_id, d.fields, d.deliveries)
        await self._dead_letter(entry, reason, error, d.event.namespace, deliveries=deliveries)

    async def _dead_letter(
        self,
        entry: Entry,
        reason: str,
        error: str,
        namespace: str | None,
        *,
        deliveries: int | None = None,
    ) -> None:
        # Flush first: if we crash before the dead letter is written, the entry is still
        # pending and comes back; if we flushed after, a crash could lose the flush.
        scope = (
            frozenset({namespace})
            if namespace is not None and namespace in self.config.namespaces
            else frozenset(self.config.namespaces)
        )
        await self.flush(scope, FlushReason.POISON, f"entry {entry.id}: {reason}")
        count = deliveries if deliveries is not None else entry.deliveries
        await _shielded(self.group.dead_letter(entry, reason=reason, error=error, deliveries=count))
        self.stats.dead_lettered += 1
        safe_call(self.observer, "on_dead_letter", entry.id, reason, count)
        log.error(
            "dead-lettered entry %s of %s (%s): %s", entry.id, self.group.stream, reason, error
        )

    # ---- acks --------------------------------------------------------------------------
    async def ack(self, ids: Sequence[str]) -> None:
        """One XACK for the batch, with the counts since the last one; shielded, and retried
        while Redis is briefly unreachable."""
        await self._ack(ids, shielded=True)

    async def _ack(self, ids: Sequence[str], *, shielded: bool) -> None:
        if not ids:
            return
        started = monotonic()
        delay = self.config.backoff_base_s
        counts = self.tally.take(self.group.consumer)
        while True:
            try:
                call = self.group.ack(list(ids), counts)
                acked = await (_shielded(call, self._acks) if shielded else call)
            except BackendUnavailable as exc:
                self.stats.backend_errors += 1
                safe_call(self.observer, "on_backend_error", exc)
                self.link.stream_down(exc)
                if self.stopping():
                    log.warning(
                        "ack of %d entries failed at stop (%s): they will be redelivered",
                        len(ids),
                        exc,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_cap_s)
                continue
            self.link.stream_up()
            self.stats.acked += acked
            safe_call(self.observer, "on_acked", ids, started, monotonic())
            return

    async def ack_soon(self, ids: Sequence[str]) -> None:
        """Send the ack of ``ids`` and return at once: the member's next read goes out while
        the XACK is on its way, instead of one round trip later. At most one ack is in
        flight: the previous one is settled first (:meth:`settle`), so its failure surfaces
        here, one batch late, and is handled as an ack failure always was. The entries
        stay pending until the XACK lands, so a crash meanwhile only redelivers them."""
        await self.settle()
        if ids:
            # A task of its own, never cancelled by the member's cancellation: as shielded as
            # an awaited ack, without a second task inside it.
            task = asyncio.ensure_future(self._ack(ids, shielded=False))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)
            task.add_done_callback(_retrieved)  # settle() raises it; a stop may never settle
            self._ack_in_flight = task

    async def settle(self) -> None:
        """Wait for the ack sent by :meth:`ack_soon`, if any; its error is raised here.
        Cancelling the caller does not cancel the ack (as for every ack)."""
        task, self._ack_in_flight = self._ack_in_flight, None
        if task is not None:
            await asyncio.shield(task)

    async def wait_acks(self, seconds: float) -> None:
        """Wait (bounded) for shielded acks still in flight after a cancellation."""
        if self._acks:
            await asyncio.wait(self._acks, timeout=seconds)


async def _shielded(coro: Awaitable[T], tasks: set[asyncio.Task[Any]] | None = None) -> T:
    """Run ``coro`` so that cancelling the caller does not cut it in half."""
    task: asyncio.Future[T] = asyncio.ensure_future(coro)
    if tasks is not None:
        tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(tasks.discard)
    return await asyncio.shield(task)


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _guess_namespace(entry: Entry) -> str | None:
    """Best effort: the namespace of an undecodable entry, to flush less than the whole scope."""
    raw = entry.fields.get(b"__data__")
    if raw is None:
        return None
    try:
        outer = orjson.loads(raw)
        inner = (
            orjson.loads(outer["data"])
            if isinstance(outer, dict) and isinstance(outer.get("data"), str)
            else outer
        )
        ns = inner.get("namespace") if isinstance(inner, dict) else None
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    return ns if isinstance(ns, str) else None
