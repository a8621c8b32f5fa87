"""A service's consumer group over every partition of a partitioned stream.

``StreamKeys(prefix, partitions=N)`` splits a stream into N partitions (see
:mod:`cachebus.contracts.partitions`). :class:`PartitionedConsumer` runs one :class:`Consumer` per
partition, concurrently, on one client (a ``redis.asyncio.RedisCluster`` spreads them over the
shards; a single Redis works with any N). Each partition has its own consumer group (same
group name, its own stream), so every guarantee of the runtime holds per partition: replay of
own pending entries, claiming, dead letters, gap detection, and on a cluster, a failover of the
node serving the partition. A gap in any partition flushes the whole scope: a partition
carries key events of every namespace the group guards.

The sinks are shared by the partitions (they must be safe to call concurrently; the shipped
ones are), and so is the observer; stats and health are summed up over the partitions.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from cachebus.consumers.config import ConsumerConfig
from cachebus.consumers.observe import ConsumerObserver, ConsumerStats, Health
from cachebus.consumers.runtime import Consumer
from cachebus.consumers.sinks import Sink
from cachebus.contracts.errors import ConsumerError
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import AsyncClient

__all__ = ["PartitionedConsumer"]


class PartitionedConsumer:
    """One :class:`Consumer` per partition of ``keys`` (``keys.partitions`` of them)."""

    def __init__(
        self,
        client: AsyncClient,
        config: ConsumerConfig,
        sinks: Sequence[Sink],
        *,
        keys: StreamKeys,
        observer: ConsumerObserver | None = None,
        registry: Registry | None = None,
        where: str = "stream Redis",
    ) -> None:
        if keys.partition is not None:
            raise ConsumerError(
                f"keys name partition {keys.partition} only: give the whole layout, "
                f"StreamKeys({keys.prefix!r}, partitions={keys.partitions})"
            )
        self.config = config
        self.keys = keys
        self.consumers = tuple(
            Consumer(
                client,
                config,
                sinks,
                keys=part,
                observer=observer,
                registry=registry,
                where=f"{where} (partition {i} of {keys.partitions})",
            )
            for i, part in enumerate(keys.all_partitions())
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def partitions(self) -> int:
        return len(self.consumers)

    async def run(self, *, until_idle: bool = False) -> None:
        """Run every partition's consumer until :meth:`stop` (or until all are idle).

        If one of them fails with an unexpected error, the others are stopped and the error
        is raised (as an ``ExceptionGroup``).
        """
        if self._task is not None:
            raise ConsumerError("this consumer is already running")
        self._task = asyncio.current_task()
        try:
            async with asyncio.TaskGroup() as group:
                for consumer in self.consumers:
                    group.create_task(consumer.run(until_idle=until_idle))
        finally:
            self._task = None

    async def stop(self) -> None:
        """Stop every partition's consumer (each finishes and acks its batch in flight)."""
        await asyncio.gather(*(c.stop() for c in self.consumers))

    async def __aenter__(self) -> PartitionedConsumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def stats(self) -> ConsumerStats:
        """The partitions' counters added up (a snapshot)."""
        total = ConsumerStats()
        flushes: Counter[str] = Counter()
        last_at: float | None = None
        for consumer in self.consumers:
            stats = consumer.stats
            for name in ConsumerStats.__dataclass_fields__:
                value = getattr(stats, name)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(total, name, getattr(total, name) + value)
            flushes.update(stats.flushes)
            if stats.last_flush_at is not None and (
                last_at is None or stats.last_flush_at > last_at
            ):
                last_at = stats.last_flush_at
                total.last_flush_reason = stats.last_flush_reason
        total.flushes = flushes
        total.last_flush_at = last_at
        return total

    def health(self) -> Health:
        """Live and ready only when every partition is; reasons name their partition."""
        parts = [c.health() for c in self.consumers]
        reasons = tuple(
            f"partition {i}: {reason}" for i, h in enumerate(parts) for reason in h.reasons
        )
        lags = [h.lag for h in parts]
        pendings = [h.pending for h in parts]
        return Health(
            live=all(h.live for h in parts),
            ready=all(h.ready for h in parts),
            connected=all(h.connected for h in parts),
            group_present=all(h.group_present for h in parts),
            pending_drained=all(h.pending_drained for h in parts),
            lag=None if any(x is None for x in lags) else sum(x for x in lags if x is not None),
            pending=None
            if any(x is None for x in pendings)
            else sum(x for x in pendings if x is not None),
            reasons=reasons,
            last_heartbeat_age_s=max(h.last_heartbeat_age_s for h in parts),
        )

    def __repr__(self) -> str:
        return (
            f"PartitionedConsumer(stream={self.config.stream!r}, group={self.config.group!r}, "
            f"partitions={self.partitions})"
        )
