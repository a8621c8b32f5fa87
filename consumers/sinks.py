"""Sinks apply coalesced plans to whatever the service caches.

A sink must be idempotent (an event may be applied twice) and must raise, never swallow, when
it could not apply a plan: :class:`cachebus.contracts.errors.BackendUnavailable` for "try again
later", any other exception for "this plan fails" (the runtime isolates the event and eventually
dead-letters it). Three sinks ship: a Redis namespace (through :mod:`cachebus.core`), an
in-process L1 cache, and a callback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cachetools import LRUCache

from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Delivered, Plan

if TYPE_CHECKING:
    from cachebus.core import Cache, LocalCache

__all__ = ["CallbackSink", "LocalCacheSink", "RedisCacheSink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    async def apply(self, plan: Plan) -> None: ...

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None: ...


class RedisCacheSink:
    """A service's shared Redis cache: UNLINK keys, SCAN+UNLINK patterns, generation flushes.

    All the keys of a batch go out in one round trip (``Cache.invalidate_ids``); a pattern over
    ``max_keys_per_pattern`` escalates to a namespace flush inside the cache core.
    """

    def __init__(self, cache: Cache, *, max_keys_per_pattern: int | None = None) -> None:
        self.cache = cache
        self.max_keys_per_pattern = max_keys_per_pattern
        self.escalations = 0

    async def apply(self, plan: Plan) -> None:
        if plan.keys:
            await self.cache.invalidate_ids(plan.keys)
        for ns, patterns in plan.patterns.items():
            for pattern in sorted(patterns):
                result = await self.cache.invalidate_pattern(
                    ns, pattern, max_keys=self.max_keys_per_pattern
                )
                self.escalations += int(result.escalated)
        for ns in sorted(plan.flushes):
            await self.cache.flush_namespace(ns)

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None:
        for ns in sorted(namespaces):
            await self.cache.flush_namespace(ns)

    def __repr__(self) -> str:
        return f"RedisCacheSink(scope={self.cache.keyspace.scope!r})"


class LocalCacheSink:
    """An in-process L1 cache (:class:`cachebus.core.LocalCache`)."""

    def __init__(self, local: LocalCache) -> None:
        self.local = local

    async def apply(self, plan: Plan) -> None:
        for ns, ids in plan.keys.items():
            self.local.invalidate_keys(ns, ids)
        for ns, patterns in plan.patterns.items():
            for pattern in patterns:
                self.local.invalidate_pattern(ns, pattern)
        for ns in plan.flushes:
            self.local.flush_namespace(ns)

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None:
        for ns in namespaces:
            self.local.flush_namespace(ns)


EventCallback = Callable[[Delivered], Awaitable[None]]
FlushCallback = Callable[[frozenset[str], FlushReason], Awaitable[None]]


class CallbackSink:
    """Calls ``on_event`` once per event, in stream order; ``on_flush`` for every flush.

    ``on_event`` receives a :class:`~cachebus.consumers.plan.Delivered`: the event
    (``.event``), its entry id, its envelope headers and how often it was delivered. If it
    raises, the batch is retried and, after ``max_deliveries``, the event is dead-lettered
    and its namespace flushed (``on_flush`` is told), so a callback should raise only for
    what a retry can fix.

    Delivery is at least once, so a callback may see an event again after a crash; a window of
    recent ``event_id`` values spares it the common case of the same event twice in a row
    (a redelivered batch, a producer retry that appended a duplicate).
    """

    def __init__(
        self,
        on_event: EventCallback,
        on_flush: FlushCallback | None = None,
        *,
        dedupe_window: int = 4096,
    ) -> None:
        self.on_event = on_event
        self.on_flush = on_flush
        self._seen: LRUCache[str, bool] = LRUCache(maxsize=max(1, dedupe_window))
        self.duplicates_skipped = 0

    async def apply(self, plan: Plan) -> None:
        for item in plan.delivered:
            event_id = item.event.event_id
            if event_id in self._seen:
                self.duplicates_skipped += 1
                continue
            await self.on_event(item)
            # Only after success: a failed callback must see the event again.
            self._seen[event_id] = True

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None:
        if self.on_flush is not None:
            await self.on_flush(frozenset(namespaces), reason)
