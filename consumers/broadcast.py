"""Broadcast mode: every process applies every event to its own in-process (L1) cache.

No consumer group: each process reads with XREAD from its own position. It starts at the
stream's current end (its L1 is empty, so nothing older can be stale in it), resumes from its
last id after a reconnect, and flushes its L1 when it cannot have seen everything:

* entries after its position were removed before it read them (counted like a group's
  deficit: it knows how many entries it has passed, Redis how many were ever removed);
* the stream vanished or was recreated (its epoch or ``entries-added`` went backwards);
* it has been disconnected longer than the staleness budget (it keeps the L1 flushed until it
  is connected again, then replays what it missed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from cachebus.consumers.config import BroadcastConfig, FlushReason
from cachebus.consumers.entries import (
    Entry,
    StreamState,
    parse_raw_read,
    parse_read,
    parse_stream_info,
    text,
)
from cachebus.consumers.observe import ConsumerObserver, ConsumerStats, monotonic, safe_call
from cachebus.consumers.plan import Delivered, coalesce
from cachebus.consumers.sinks import Sink
from cachebus.contracts.codec import decode_entries
from cachebus.contracts.errors import AccessDenied, BackendError, ConsumerError, EventDecodeError
from cachebus.contracts.keys import StreamKeys
from cachebus.core._client import is_cluster
from cachebus.core._tasks import cancel_and_wait
from cachebus.core.connection import map_redis_errors

__all__ = ["BroadcastConsumer"]

log = logging.getLogger("cachebus.broadcast")


class BroadcastConsumer:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        config: BroadcastConfig,
        sinks: Sequence[Sink],
        *,
        keys: StreamKeys | None = None,
        observer: ConsumerObserver | None = None,
        where: str = "stream Redis",
    ) -> None:
        if not sinks:
            raise ConsumerError("a broadcast consumer needs at least one sink")
        keys = keys or StreamKeys()
        self.client = client
        self.config = config
        self.sinks = tuple(sinks)
        self.stream = keys.stream(config.stream)
        self.epoch_key = keys.epoch(config.stream)
        self.where = where
        self.stats = ConsumerStats()
        self.observer = observer or ConsumerObserver()
        #: Last id applied; None until the first read placed us at the stream's end.
        self.position: str | None = None
        self._passed = 0  # entries ever added up to our position
        self._epoch: str | None = None
        self._seen_stream = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._disconnected_since: float | None = None
        self._stale_flushed = False
        self.connected = False

    async def run(self, *, until_idle: bool = False) -> None:
        if self._task is not None:
            raise ConsumerError("this consumer is already running")
        self._task = asyncio.current_task()
        self._stopping = False
        block_ms = min(self.config.block_ms, 100) if until_idle else self.config.block_ms
        try:
            while not self._stopping:
                try:
                    count = await self._iteration(block_ms)
                except AccessDenied:
                    raise  # a configuration error: retrying cannot help
                except BackendError as exc:
                    # Unreachable, LOADING, BUSY, READONLY, or an unexpected reply; also a
                    # read unblocked because its stream was deleted (Redis 7.2+ may say so;
                    # 7.0 lets XREAD block on): the next read finds the stream gone and flushes.
                    await self._unavailable(exc)
                    continue
                if until_idle and count == 0:
                    return
        finally:
            self._task = None

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=self.config.grace_period_s)
        if not done:
            await cancel_and_wait(task, within=1.0)

    async def _iteration(self, block_ms: int) -> int:
        clustered = is_cluster(self.client)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.epoch_key, secrets.token_hex(8), nx=True)
        pipe.get(self.epoch_key)
        pipe.execute_command("XINFO STREAM", self.stream)
        read_from = self.position
        if read_from is not None:
            pipe.execute_command(
                "XREAD" if clustered else b"XREAD",
                "COUNT",
                self.config.read_count,
                "BLOCK",
                block_ms,
                "STREAMS",
                self.stream,
                read_from,
            )
        with map_redis_errors(f"XREAD {self.stream}", self.where):
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies[:2]:
            if isinstance(reply, Exception):
                with map_redis_errors(f"XREAD {self.stream}", self.where):
                    raise reply
        self._reconnected()
        epoch = text(replies[1]) if replies[1] is not None else None
        info = replies[2]
        state = None if isinstance(info, Exception) else parse_stream_info(info, [])
        await self._check(epoch, state)
        if read_from is None or read_from != self.position or len(replies) < 4:
            return 1  # (re)positioned: read from the new position next time
        if isinstance(replies[3], Exception):
            with map_redis_errors(f"XREAD {self.stream}", self.where):
                raise replies[3]
        entries = (parse_read if clustered else parse_raw_read)(replies[3], self.stream)
        await self._apply(entries)
        return len(entries)

    async def _check(self, epoch: str | None, state: StreamState | None) -> None:
        if self.position is None:  # first contact: start at the end, L1 is empty
            self._epoch = epoch
            self.position = state.last_generated_id if state else "0-0"
            self._passed = state.entries_added if state else 0
            self._seen_stream = state is not None
            return
        vanished = state is None and self._seen_stream
        if epoch != self._epoch or vanished or (state and state.entries_added < self._passed):
            await self._flush(FlushReason.STREAM_LOST, "the stream vanished or was recreated")
            self._epoch = epoch
            self.position = "0-0"
            self._passed = 0
            self._seen_stream = state is not None
            return
        if state is None:
            return
        self._seen_stream = True
        if state.removed > self._passed:
            await self._flush(
                FlushReason.TRIMMED, f"{state.removed - self._passed} entries removed unread"
            )
            self._passed = state.removed

    async def _apply(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self.stats.read += len(entries)
        delivered: list[Delivered] = []
        for entry, decoded in zip(
            entries, decode_entries([(e.id, e.fields) for e in entries]), strict=True
        ):
            if isinstance(decoded, EventDecodeError):
                self.stats.decode_errors += 1
                await self._flush(FlushReason.POISON, f"entry {entry.id}: {decoded}")
                continue
            if decoded.event.namespace in self.config.namespaces:
                delivered.append(
                    Delivered(entry.id, decoded.event, decoded.headers, 1, entry.fields)
                )
            else:
                self.stats.foreign_skipped += 1
        if delivered:
            plan = coalesce(delivered)
            started = monotonic()
            for sink in self.sinks:
                await sink.apply(plan)
            self.stats.applied += len(delivered)
            safe_call(self.observer, "on_applied", delivered, started, monotonic())
        self.position = entries[-1].id
        self._passed += len(entries)

    async def _flush(self, reason: FlushReason, detail: str, *, count: bool = True) -> None:
        scope = frozenset(self.config.namespaces)
        for sink in self.sinks:
            await sink.flush(scope, reason)
        if count:
            self.stats.flushes[reason.value] += 1
            self.stats.last_flush_reason = reason.value
            self.stats.last_flush_at = monotonic()
            log.warning("flushed L1 %s: %s (%s)", sorted(scope), reason.value, detail)
            safe_call(self.observer, "on_flush", reason, scope, detail)

    def _reconnected(self) -> None:
        if not self.connected and self._disconnected_since is not None:
            log.warning(
                "stream Redis reachable again after a %.1fs outage (broadcast); replaying from %s",
                monotonic() - self._disconnected_since, self.position,
            )  # fmt: skip
        self.connected = True
        self._disconnected_since = None
        self._stale_flushed = False

    async def _unavailable(self, exc: BackendError) -> None:
        self.stats.backend_errors += 1
        safe_call(self.observer, "on_backend_error", exc)
        now = monotonic()
        if self._disconnected_since is None:
            self._disconnected_since = now
            log.warning("stream Redis failed, retrying: %s", exc)
        self.connected = False
        if now - self._disconnected_since > self.config.max_staleness_s:
            # Keep L1 empty while we cannot hear invalidations: count the first flush only.
            await self._flush(
                FlushReason.STALE_BUDGET, "disconnected too long", count=not self._stale_flushed
            )
            self._stale_flushed = True
        outage = now - self._disconnected_since
        await asyncio.sleep(
            min(self.config.backoff_base_s * 2 ** min(outage, 10), self.config.backoff_cap_s)
        )

    def describe(self) -> dict[str, Any]:
        return {"stream": self.stream, "position": self.position, "connected": self.connected}
