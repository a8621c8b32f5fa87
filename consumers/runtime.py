"""The group-mode consumer: one service's consumer group on the invalidation stream.

Lifecycle (saq/dramatiq style): ``__init__`` only stores things; ``run()`` creates or checks the
group, drains this member's own pending entries (read id ``0``) before reading ``>`` (at start,
and again after any stream-side failure: see :mod:`cachebus.consumers.replay`), and loops until
``stop()``; ``stop()`` is idempotent: stop reading, let the batch in flight finish and ack
within the grace period, then cancel (acks are shielded), then give up at the hard deadline.
Signals are the CLI's business, never this module's.

Reads come in two kinds. A *lean* read is XREADGROUP alone: the hot path, at the tail. A
*checking* read adds, in the same round trip, the group meta and the stream's state just
before and just after the XREADGROUP, and runs every check that turns a loss into a flush
(epoch, trimmed or deleted entries: :mod:`cachebus.consumers.gaps`). NOGROUP (and UNBLOCKED)
is the XREADGROUP's own reply, so it is seen on every read of either kind. A read is a
checking read at start, after any error or recovery, after an empty read, while the last
check was not exact (the group not caught up, or Redis not counting for it), and whenever
``block_ms`` has passed since the last check; a lean read never blocks past that deadline.
A short read (fewer entries than ``read_count``) is *not* a reason: at the tail every read is
short, and checking each one is the cost this schedule removes.

The bound this gives (the longest a gap can go undetected), for a gap (entries removed before
this group read them, or the group replaced) that happens at time t:

* while the member keeps up with the stream, the next check starts by t + ``block_ms`` and
  ends one read later, so the flush is done by t + ``block_ms`` + one batch (its apply and
  ack) + one read; the same as before lean reads existed, when a gap happening during a
  blocked read was seen only when that read returned (up to ``block_ms`` later);
* while it lags behind (a backlog), every read is a checking read, so a loss ahead of the
  group is found before the group reads past it, as before.

The evidence survives the group reading past a loss between two checks
(:func:`~cachebus.consumers.gaps.check_after`): nothing is lost by checking less often, only
detected later, within the bound. And nothing is served stale because of that delay that
would not have been served anyway: an invalidation lost in a gap was never going to be applied
(it is gone from Redis); the flush at detection bumps the scope's generation, which drops
every value cached before it, those filled during the window included; every event delivered
meanwhile is applied as usual. What the window adds is at most ``block_ms`` more of serving
values the lost entries would have invalidated, which the old schedule also allowed (a read
blocked ``block_ms`` saw the loss no earlier).

Entries idle past ``min_idle_ms`` in another member's pending list are claimed every
``claim_interval_s``, and a read never blocks past the next claim round, so a dead member's
entries are applied within ``min_idle_ms`` + ``claim_interval_s`` + one batch. The server's
run_id, a cluster failover, idle members, the registry record and retention are
:mod:`cachebus.consumers.housekeeping`'s, on their own interval. Given the system's registry,
the member reports registry drift (:mod:`cachebus.consumers.drift`).

No reply of Redis ends :meth:`Consumer.run` except :class:`~cachebus.contracts.errors.AccessDenied`
(a configuration error: NOPERM, WRONGPASS). A lost group or stream (NOGROUP, UNBLOCKED) is
recreated and flushed; "come back later" (unreachable, LOADING, BUSY, READONLY) and any
unexpected error reply are counted, logged and retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine, Sequence
from typing import Any

from cachebus.consumers.config import ConsumerConfig, FlushReason
from cachebus.consumers.drift import DriftMonitor
from cachebus.consumers.entries import StreamState, stream_id
from cachebus.consumers.gaps import NO_GAP, caught_up, check_after, check_gap, combine
from cachebus.consumers.group import GroupMeta, ReadResult, StreamGroup
from cachebus.consumers.housekeeping import Housekeeper
from cachebus.consumers.observe import ConsumerObserver, ConsumerStats, Health, monotonic, safe_call
from cachebus.consumers.processing import BatchProcessor, Link
from cachebus.consumers.replay import ReplayDue
from cachebus.consumers.sinks import Sink
from cachebus.contracts.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    ConsumerError,
    GroupMissingError,
    NotPrimary,
)
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import AsyncClient
from cachebus.core._tasks import cancel_and_wait
from cachebus.core.connection import drop_connections

__all__ = ["Consumer"]

log = logging.getLogger("cachebus.consumer")


class Consumer:
    """One member of a service's consumer group. ``registry``: the system's registry, to
    report drift and record which registry this member runs (None: neither)."""

    def __init__(
        self,
        client: AsyncClient,
        config: ConsumerConfig,
        sinks: Sequence[Sink],
        *,
        keys: StreamKeys | None = None,
        observer: ConsumerObserver | None = None,
        registry: Registry | None = None,
        where: str = "stream Redis",
    ) -> None:
        if not sinks:
            raise ConsumerError("a consumer needs at least one sink to apply invalidations to")
        self.config = config
        self.keys = keys or StreamKeys()
        self.stats = ConsumerStats()
        self.observer = observer or ConsumerObserver()
        self.group = StreamGroup(
            client, self.keys, config.stream, config.group, config.consumer, where=where
        )
        self.sinks = tuple(sinks)
        drift = (
            DriftMonitor(registry, self.group, self.stats, self.observer)
            if registry is not None
            else None
        )
        self.processor = BatchProcessor(
            self.group,
            config,
            self.sinks,
            self.stats,
            self.observer,
            self._flush,
            lambda: self._stopping,
            _RuntimeLink(self),
            drift=drift,
        )
        self.housekeeping = Housekeeper(
            self.group,
            config,
            self.stats,
            self._flush,
            server_restarted=lambda: self.replay.owe("server restarted"),
            max_seen=lambda: self.processor.max_seen,
            drift=drift,
        )
        self._stopping = False
        self._started = False  # a stop() before the first run() must not be lost
        self._requested = 0  # run() calls so far
        self._stopped_at = -1  # the value of _requested at the last stop()
        self._task: asyncio.Task[None] | None = None
        self._stop_lock: asyncio.Lock | None = None
        self._heartbeat = monotonic()
        self._connected = False
        self._disconnected_since: float | None = None
        self._sink_failing_since: float | None = None
        self._sink_error = ""
        self._group_present = False
        self._group_seen = False
        self._lost: FlushReason | None = None  # the group is gone: recreate before reading
        #: Own pending entries to replay (id 0) before reading new ones (>).
        self.replay = ReplayDue()
        self._state: StreamState | None = None
        self._next_claim = 0.0
        #: The next read checks (see the module's docstring); then checks by this deadline.
        self._check_due = True
        self._next_check = 0.0
        #: The group's position at our last check: what an XDEL since then is compared to.
        self._checked_at_id: str | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> Coroutine[Any, Any, None]:
        """Consume until :meth:`stop` (or, with ``until_idle``, until nothing is left to do).

        A :meth:`stop` counts for a run requested before it, even one whose task has not
        started yet (``ensure_future(consumer.run())`` then ``stop()``): the request is
        recorded here, when ``run()`` is called, not when its coroutine first runs.
        """
        self._requested += 1
        return self._run(until_idle, self._requested)

    async def _run(self, until_idle: bool, request: int) -> None:
        if self._task is not None:
            raise ConsumerError("this consumer is already running")
        self._task = asyncio.current_task()
        # A stop() before the first run, or after this run was requested, is kept; an older
        # one (the stop that ended the previous run) is not: a restart runs again.
        if self._started and self._stopped_at < request:
            self._stopping = False
        self._started = True
        self.replay.owe("start", again=False)  # every (re)start replays our pending entries
        block_ms = min(self.config.block_ms, 100) if until_idle else self.config.block_ms
        try:
            while not self._stopping:
                try:
                    if self._lost is not None or self.replay.due:
                        # The last batch's ack first: its failure (a lost group, Redis gone)
                        # is handled here, before the recovery or replay, not after it.
                        await self.processor.settle()
                    if self._lost is not None:
                        await self._recover(self._lost)
                        continue
                    if self.replay.due:
                        await self._drain_own_pending()
                        continue
                    progressed = await self._iteration(block_ms)
                    if until_idle and not progressed:
                        await self.processor.settle()  # a failed ack: replayed before we end
                        break
                except GroupMissingError:
                    self._lost = FlushReason.GROUP_LOST
                    self._check_due = True
                    self.replay.owe("group lost")
                except AccessDenied:
                    raise  # a configuration error: retrying cannot help
                except _FlushAbandoned as abandoned:
                    log.warning(
                        "consumer %s stopped while the cache was unreachable (%s): the %s "
                        "flush was not done; the next start does it",
                        self.config.consumer, abandoned.cause, abandoned.reason.value,
                    )  # fmt: skip
                    return
                except BackendError as exc:
                    self._check_due = True
                    self.replay.owe("stream error")
                    await self._failed(exc)
            await self._settle_last_ack()
        finally:
            self._heartbeat = monotonic()
            self._task = None

    async def stop(self) -> None:
        """Stop reading, finish the batch in flight, then cancel. Safe to call twice."""
        if self._stop_lock is None:
            self._stop_lock = asyncio.Lock()
        async with self._stop_lock:
            self._stopping = True
            self._stopped_at = self._requested
            task = self._task
            if task is None or task.done() or task is asyncio.current_task():
                return
            done, _ = await asyncio.wait({task}, timeout=self.config.grace_period_s)
            if not done:
                log.warning(
                    "consumer %s did not stop within the grace period; cancelling",
                    self.config.consumer,
                )
                rest = self.config.hard_deadline_s - self.config.grace_period_s
                if not await cancel_and_wait(task, within=max(rest, 0.1)):
                    log.error(
                        "consumer %s still running at the hard deadline", self.config.consumer
                    )
            await self.processor.wait_acks(1.0)

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- the loop -------------------------------------------------------------------------
    async def _iteration(self, block_ms: int) -> bool:
        now = monotonic()
        progressed = False
        if now >= self._next_claim:
            progressed = await self._claim_round() > 0
            self._next_claim = monotonic() + self.config.claim_every_s
        if self.housekeeping.due(now):
            await self.housekeeping.run()
        started = monotonic()
        check = self._check_due or started >= self._next_check
        # Never block past the next claim round: it bounds how long a dead member's entries
        # wait. A lean read never blocks past the next check: that bounds an unseen gap.
        until = self._next_claim if check else min(self._next_claim, self._next_check)
        block = max(1, min(block_ms, int((until - started) * 1000)))
        result = await self.group.read(count=self.config.read_count, block_ms=block, check=check)
        self.replay.read_new()
        read = (started, monotonic())
        await self._after_read(result, "new")
        if not result.entries:
            self._check_due = True  # idle: a check costs nothing here
        # The ack goes out without waiting for its reply: the next read leaves at once, so an
        # event published meanwhile is not held up by the ack's round trip.
        await self.processor.process(result.entries, "new", read, ack_later=True)
        return progressed or bool(result.entries)

    async def _settle_last_ack(self) -> None:
        """The loop is done: wait for the last batch's ack (sent without waiting)."""
        try:
            await self.processor.settle()
        except AccessDenied:
            raise
        except BackendError as exc:
            self.replay.owe("ack failed")
            log.warning(
                "the last ack of consumer %s failed (%s): its entries are replayed at the next "
                "start", self.config.consumer, exc,
            )  # fmt: skip

    async def _drain_own_pending(self) -> None:
        """Our own pending entries first: at start (a restarted member never misses them), and
        after a failure (a read whose reply was lost delivered its entries to us anyway)."""
        token = self.replay.begin()
        start = "0"
        while not self._stopping:
            started = monotonic()
            result = await self.group.read(
                count=self.config.read_count, block_ms=None, pending=True, start_id=start
            )
            await self._after_read(result, "pending")
            entries = [e for e in result.entries if stream_id(e.id) > stream_id(start)]
            if not entries:
                break
            entries = await self.group.pending_deliveries(entries)
            await self.processor.process(entries, "pending", (started, monotonic()))
            start = entries[-1].id
        else:
            return  # stopping: the next start replays what is left
        self.replay.settle(token)

    async def _after_read(self, result: ReadResult, source: str) -> None:
        self._mark_connected()
        if result.group_missing:
            # Without persistence the meta is gone too: what we saw before still tells a loss.
            meta_epoch = result.meta.epoch if result.meta is not None else None
            known = meta_epoch is not None or self._group_seen
            reason = FlushReason.GROUP_LOST if known else FlushReason.NEW_GROUP
            await self._recover(reason)
            return
        self._group_present = self._group_seen = True
        meta = result.meta
        if meta is None:  # a lean read: nothing to check
            safe_call(self.observer, "on_read", source, len(result.entries), None)
            return
        self._state = result.after or result.state
        safe_call(self.observer, "on_read", source, len(result.entries), self._state)
        if meta.epoch is None or meta.synced != meta.epoch:
            epoch = meta.epoch or await self.group.rotate_epoch()
            await self._flush(
                self.config.namespaces,
                FlushReason.EPOCH_CHANGED,
                "scope not synced to the group's epoch",
            )
            await self.group.mark_synced(epoch, reason=None)
        await self._check_gaps(result, meta)

    async def _check_gaps(self, result: ReadResult, meta: GroupMeta) -> None:
        group = self.config.group
        before = check_gap(result.state, group, meta) if result.state is not None else NO_GAP
        after = result.after
        verdict = combine(
            before,
            check_after(after, group, meta, self._checked_at_id) if after is not None else NO_GAP,
        )
        if verdict.gap:
            await self._flush(self.config.namespaces, FlushReason.TRIMMED, verdict.detail)
        if verdict.gap or verdict.deficit is not None:
            await self.group.mark_synced(
                None, reason=None, deficit=verdict.deficit, fallback_mark=verdict.fallback_mark
            )
        # Recorded only once the verdict is acted on: a failure above checks again from the
        # same position. Lean reads resume only after an exact check (gaps.caught_up).
        info = after.groups.get(group) if after is not None else None
        self._checked_at_id = info.last_delivered_id if info is not None else None
        self._check_due = after is None or not caught_up(after, group)
        self._next_check = monotonic() + self.config.block_ms / 1000.0

    async def _recover(self, reason: FlushReason) -> None:
        """The group is gone (or new): recreate it, then flush, then record the sync.

        The group is created before the flush, so everything published before the flush is
        covered by it and everything after is read by the new group.
        """
        self._group_present = False
        self._lost = reason
        epoch = await self.group.create()
        await self._flush(self.config.namespaces, reason, "consumer group (re)created")
        await self.group.mark_synced(epoch, reason=None, deficit=0)
        self._group_present = self._group_seen = True
        self._lost = None
        self._check_due = True
        self._checked_at_id = None  # a new group: its ids say nothing about the old one's
        self.replay.owe("group recreated", again=False)

    async def _claim_round(self) -> int:
        await self.processor.settle()  # one ack in flight at most, the claimed batch's included
        claimed = 0
        cursor = "0-0"
        for _ in range(10):  # bounded per round; the next round continues
            started = monotonic()
            result = await self.group.claim(
                cursor, min_idle_ms=self.config.min_idle_ms, count=self.config.claim_count
            )
            if result.deleted_ids:
                self.stats.trimmed_pending += len(result.deleted_ids)
                await self._flush(
                    self.config.namespaces,
                    FlushReason.TRIMMED,
                    f"{len(result.deleted_ids)} pending entries trimmed",
                )
            if result.entries:
                entries = await self.group.pending_deliveries(result.entries)
                self.stats.claimed += len(entries)
                claimed += len(entries)
                await self.processor.process(entries, "claimed", (started, monotonic()))
            cursor = result.next_cursor
            if cursor == "0-0":
                break
        return claimed

    # ---- flushing -------------------------------------------------------------------------
    async def _flush(self, namespaces: Collection[str], reason: FlushReason, detail: str) -> None:
        scope = frozenset(namespaces)
        delay = self.config.backoff_base_s
        while True:
            try:
                for sink in self.sinks:
                    await sink.flush(scope, reason)
                break
            except AccessDenied:
                raise
            except BackendError as exc:
                # Never given up: without the flush, values the lost entries invalidate would
                # be served (an OOM cache refuses the generation bump until memory frees).
                if self._stopping:  # the group is not marked synced: the next start flushes
                    raise _FlushAbandoned(reason, exc) from exc
                self.stats.backend_errors += 1
                log.warning("flush (%s) failed (%s); retrying", reason, exc)
                self.processor.link.sink_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_cap_s)
        self.processor.link.sink_up()
        self.stats.flushes[reason.value] += 1
        self.stats.last_flush_reason = reason.value
        self.stats.last_flush_at = monotonic()
        # A new group's first flush is routine (nothing was cached by it yet); any other
        # flush means invalidations were lost or refused, which an operator wants to see.
        log.log(
            logging.INFO if reason is FlushReason.NEW_GROUP else logging.WARNING,
            "flushed %s of scope %s: %s (%s)",
            sorted(scope),
            self.config.group,
            reason.value,
            detail,
        )
        safe_call(self.observer, "on_flush", reason, scope, detail)
        try:
            await self.group.mark_synced(None, reason=reason.value)
        except AccessDenied:
            raise
        except BackendError:
            pass  # bookkeeping for `cachebus status` only

    # ---- health -------------------------------------------------------------------------
    def _mark_connected(self) -> None:
        if self._disconnected_since is not None:
            log.warning(
                "stream Redis reachable again after a %.1fs outage",
                monotonic() - self._disconnected_since,
            )
        self._connected = True
        self._disconnected_since = None
        self._heartbeat = monotonic()

    def _mark_disconnected(self, exc: BackendError) -> None:
        if self._connected or self._disconnected_since is None:
            if isinstance(exc, BackendUnavailable):
                log.warning("stream Redis unreachable: %s", exc)
            else:
                log.warning("stream Redis answered an unexpected error, retrying: %s", exc)
            self._disconnected_since = monotonic()
        self._connected = False
        self._heartbeat = monotonic()

    async def _failed(self, exc: BackendError) -> None:
        """A read, claim, ack or housekeeping call failed: count, back off, then go on.

        Unavailable (down, LOADING, BUSY) and unexpected error replies alike: the loop is
        never left for them, and the caller owes a replay of our pending entries.
        """
        self.stats.backend_errors += 1
        self.housekeeping.run_soon()  # after an outage, check the server first
        safe_call(self.observer, "on_backend_error", exc)
        self._mark_disconnected(exc)
        if isinstance(exc, NotPrimary):
            await drop_connections(self.group.client)
        outage = monotonic() - (self._disconnected_since or monotonic())
        delay = min(self.config.backoff_base_s * 2 ** min(outage, 10), self.config.backoff_cap_s)
        await asyncio.sleep(delay)

    def health(self) -> Health:
        now = monotonic()
        reasons: list[str] = []
        lag = pending = None
        if self._state is not None and (g := self._state.groups.get(self.config.group)):
            lag, pending = g.lag, g.pending
        if not self._connected:
            reasons.append("not connected to the stream Redis")
        if self._sink_failing_since is not None:
            # The cause: a group waiting for its first flush, or entries waiting to be
            # applied, are only its consequences.
            reasons.append(
                f"cache unreachable for {now - self._sink_failing_since:.1f}s: {self._sink_error}"
            )
        else:
            if not self._group_present:
                reasons.append("consumer group not present")
            if self.replay.blocks_readiness:
                reasons.append(f"own pending entries not replayed yet ({self.replay.reason})")
        if lag is not None and lag > self.config.lag_budget:
            reasons.append(f"lag {lag} over budget {self.config.lag_budget}")
        if (
            self._disconnected_since is not None
            and now - self._disconnected_since > self.config.max_staleness_s
        ):
            reasons.append("disconnected longer than the staleness budget")
        age = now - self._heartbeat
        live = age < 3 * self.config.block_ms / 1000.0 + self.config.min_idle_ms / 1000.0
        return Health(
            live,
            not reasons,
            self._connected,
            self._group_present,
            not self.replay.blocks_readiness,
            lag,
            pending,
            tuple(reasons),
            age,
        )


class _RuntimeLink(Link):
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def stream_down(self, exc: BackendError) -> None:
        self.consumer.replay.owe("ack or heartbeat failed")
        self.consumer._mark_disconnected(exc)

    def stream_up(self) -> None:
        self.consumer._mark_connected()

    def sink_down(self, exc: BackendError) -> None:
        if self.consumer._sink_failing_since is None:
            log.warning("cache unreachable while applying invalidations: %s", exc)
            self.consumer._sink_failing_since = monotonic()
        self.consumer._sink_error = str(exc)
        self.consumer._heartbeat = monotonic()

    def sink_up(self) -> None:
        since = self.consumer._sink_failing_since
        if since is not None:
            log.warning("cache reachable again after a %.1fs outage", monotonic() - since)
        self.consumer._sink_failing_since = None


class _FlushAbandoned(Exception):
    """A flush could not reach the cache and the consumer is stopping: not a stream error."""

    def __init__(self, reason: FlushReason, cause: BackendError) -> None:
        super().__init__(f"{reason.value} flush abandoned: {cause}")
        self.reason = reason
        self.cause = cause
