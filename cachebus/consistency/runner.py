"""``run_check``: load, faults, quiescence, and the comparison of the cache with the source.

The run, in order:

1. a scratch ``redis-server`` (AOF, so a restart keeps the stream) unless ``redis_url`` is
   given, and a :class:`~cachebus.testing.FaultProxy` in front of it for the consumer;
2. the consumer (a subprocess by default) applying the stream to the service's cache scope;
3. for ``duration_s``: writers change the source and invalidate (keys, patterns of a group,
   sometimes a namespace flush); readers ``get_or_set`` through the cache with slow loaders,
   so fills race invalidations; faults are injected at fixed points of the run;
4. quiescence: writers stop, then the check waits until every invalidation published is
   applied or covered by a flush (bounded by ``quiesce_timeout_s``), then readers stop;
5. every item is read through the cache and compared with the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis.asyncio

from cachebus.consistency.config import CheckConfig, FaultRecord, Report
from cachebus.consistency.consumer import STREAM, InProcessConsumer, SubprocessConsumer
from cachebus.consistency.faults import Faults
from cachebus.consistency.ledger import (
    ApplyLog,
    Ledger,
    flush_counts,
    lag_percentiles,
    share_within,
)
from cachebus.consistency.registry import CHECK_REGISTRY, NAMESPACE
from cachebus.consistency.sources import MemorySource, Source, SQLiteSource
from cachebus.consistency.workload import Workload
from cachebus.contracts.errors import ConsumerError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, CacheConfig
from cachebus.producers import Producer
from cachebus.testing import FaultProxy, RedisServer, ServerOptions

__all__ = ["PHASES", "run_check"]

SCOPE = "checked"


#: The phases of a check, in order, as ``on_phase`` is told them.
PHASES = ("starting", "load", "quiescence", "comparing")


async def run_check(config: CheckConfig, on_phase: Callable[[str], None] | None = None) -> Report:
    """Run one bounded check and report what it found (see :class:`Report`); ``on_phase`` is
    called with each of :data:`PHASES` as it begins (a progress display)."""
    tell = on_phase or (lambda phase: None)
    tell("starting")
    with tempfile.TemporaryDirectory(prefix="cachebus-check-") as tmp:
        async with _redis(config, Path(tmp)) as (server, url):
            return await _Run(config, Path(tmp), server, url, tell).go()


@contextlib.asynccontextmanager
async def _redis(config: CheckConfig, tmp: Path) -> AsyncIterator[tuple[RedisServer | None, str]]:
    if config.redis_url is not None:
        yield None, config.redis_url
        return
    directory = tmp / "redis"
    directory.mkdir()
    server = RedisServer(ServerOptions(persistence="aof-everysec"), directory=directory)
    await asyncio.to_thread(server.start)
    try:
        yield server, server.url
    finally:
        await asyncio.to_thread(server.close)


class _Run:
    def __init__(
        self,
        config: CheckConfig,
        tmp: Path,
        server: RedisServer | None,
        url: str,
        tell: Callable[[str], None],
    ) -> None:
        self.tell = tell
        self.config = config
        self.tmp = tmp
        self.server = server
        self.url = url
        self.ids = [f"g{n % config.groups}:{n}" for n in range(config.keys)]
        self.ledger = Ledger(NAMESPACE)
        self.log = ApplyLog(tmp / "applied.log")
        # A fresh prefix per run: checks sharing an external Redis never see each other's keys.
        self.prefix = f"{config.prefix}{secrets.token_hex(3)}"
        self.keyspace = KeySpace(prefix=self.prefix, scope=SCOPE, registry=CHECK_REGISTRY)
        self.started_ms = 0

    async def go(self) -> Report:
        cfg = self.config
        target = _host_port(self.url)
        proxy = FaultProxy(*target).start()
        producer = Producer.from_url(
            self.url,
            producer_name="check-writer",
            keys=StreamKeys(self.prefix),
            registry=CHECK_REGISTRY,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        consumer_cls = SubprocessConsumer if cfg.consumer == "subprocess" else InProcessConsumer
        consumer = consumer_cls(
            proxy.url_for(self.url), self.prefix, SCOPE, NAMESPACE, self.log.path
        )
        source = self._source(producer)
        caches = [
            Cache.from_url(self.url, self.keyspace, CacheConfig(), socket_timeout=1.0)
            for _ in range(cfg.reader_processes)
        ]
        try:
            await source.setup(self.ids, cfg.writers)
            await consumer.start()
            await self._until_ready(consumer)
            return await self._load_and_check(source, consumer, caches, proxy)
        finally:
            await consumer.stop()
            await source.close()
            for cache in caches:
                await cache.aclose()
            await producer.aclose()
            proxy.close()
            if self.server is None:
                await self._clean_up()

    async def _clean_up(self) -> None:
        """Remove this run's keys from an external Redis (a scratch one just goes away)."""
        streams = StreamKeys(self.prefix)
        named = [
            streams.stream(STREAM),
            streams.epoch(STREAM),
            streams.group_meta(STREAM, SCOPE),
            streams.dead_letter(STREAM, SCOPE),
            streams.counters(STREAM, SCOPE),
            streams.registry_record(STREAM),
        ]
        client = redis.asyncio.Redis.from_url(self.url, socket_timeout=5.0)
        try:
            await client.unlink(*named)
            batch: list[bytes] = []
            async for key in client.scan_iter(match=self.keyspace.scope_match(), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
        finally:
            await client.aclose()

    def _source(self, producer: Producer) -> Source:
        if self.config.source == "sqlite":
            return SQLiteSource(self.ledger, producer, NAMESPACE, self.tmp / "source.db")
        return MemorySource(self.ledger, producer, NAMESPACE)

    async def _until_ready(self, consumer: Any, within_s: float = 30.0) -> None:
        deadline = time.monotonic() + within_s
        while True:
            self.log.refresh()
            if len(self.log.ready) >= consumer.starts:
                return
            if time.monotonic() > deadline:
                raise ConsumerError(
                    f"the checked consumer did not start within {within_s:.0f}s; its log:\n"
                    f"{consumer.diagnosis()}"
                )
            await asyncio.sleep(0.02)

    async def _load_and_check(
        self, source: Source, consumer: Any, caches: list[Cache], proxy: FaultProxy
    ) -> Report:
        cfg = self.config
        started = time.monotonic()
        self.started_ms = int(time.time() * 1000)
        faults = Faults(
            cfg, consumer, proxy, self.server, started, lambda: self._until_ready(consumer)
        )
        load = Workload(cfg, self.ids, source, self.ledger)
        writers = [asyncio.create_task(load.writer(i)) for i in range(cfg.writers)]
        readers = [
            asyncio.create_task(load.reader(caches[i % len(caches)], i)) for i in range(cfg.readers)
        ]
        fault_task = asyncio.create_task(faults.run())
        self.tell("load")
        await asyncio.sleep(cfg.duration_s)
        load.stop_writers.set()
        await asyncio.gather(*writers)
        await fault_task
        if cfg.final_sweep:
            await load.sweep()
        load_s = time.monotonic() - started
        quiet_started = time.monotonic()
        self.tell("quiescence")
        await self._quiesce(source, consumer)
        quiescence_s = time.monotonic() - quiet_started
        load.stop_readers.set()
        await asyncio.gather(*readers)
        self.tell("comparing")
        stale, cached = await self._compare(source)
        return self._report(load_s, quiescence_s, stale, cached, faults.records, caches)

    async def _quiesce(self, source: Source, consumer: Any) -> None:
        deadline = time.monotonic() + self.config.quiesce_timeout_s
        while time.monotonic() < deadline:
            self.log.refresh()
            if await source.backlog() == 0 and self.ledger.pending(self.log) == 0:
                return
            await asyncio.sleep(0.05)

    async def _compare(self, source: Source) -> tuple[int, int]:
        truth = await source.versions()
        async with Cache.from_url(self.url, self.keyspace) as checker:
            cached = await checker.get_many(NAMESPACE, self.ids)
        stale = sum(1 for ident, value in cached.items() if value != {"v": truth[ident]})
        return stale, len(cached)

    def _report(
        self,
        load_s: float,
        quiescence_s: float,
        stale: int,
        cached: int,
        faults: list[FaultRecord],
        caches: list[Cache],
    ) -> Report:
        cfg = self.config
        self.log.refresh()
        lags = self.ledger.lags(self.log)
        # An event is "steady" if its 1-second window overlaps no fault (nor its settling).
        windows = [(f.started_s - 1.0, f.ended_s + cfg.settle_s) for f in faults]
        steady = [
            lag
            for event_id, lag in lags.done.items()
            if not _inside(self.ledger.events[event_id], self.started_ms, windows)
        ]
        p50, p99, worst = lag_percentiles(lags.done.values())
        totals: dict[str, int] = {}
        for cache in caches:
            for name, value in cache.stats.as_dict().items():
                totals[name] = totals.get(name, 0) + value
        return Report(
            duration_s=round(load_s, 2),
            writes=self.ledger.writes,
            reads=len(self.ledger.reads),
            events=len(self.ledger.events),
            applied=len(lags.done) - lags.covered_by_flush,
            covered_by_flush=lags.covered_by_flush,
            lost=len(lags.lost),
            unpublished=self.ledger.unpublished,
            keys_checked=len(self.ids),
            keys_cached=cached,
            stale_after_quiescence=stale,
            reads_stale_over_1s=self.ledger.stale_reads_over(1000),
            within_1s=share_within(lags.done.values(), 1000),
            within_1s_steady=share_within(steady, 1000),
            steady_events=len(steady),
            lag_p50_ms=round(p50, 1),
            lag_p99_ms=round(p99, 1),
            lag_max_ms=round(worst, 1),
            quiescence_s=round(quiescence_s, 2),
            flushes=flush_counts(self.log),
            faults=tuple(faults),
            cache={k: totals[k] for k in ("hits", "misses", "sets", "refused_fills", "loads")},
            config={k: v for k, v in asdict(cfg).items() if k != "redis_url"},
        )


def _inside(created_ms: int, origin_ms: int, windows: list[tuple[float, float]]) -> bool:
    at = (created_ms - origin_ms) / 1000.0
    return any(start <= at <= end for start, end in windows)


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379
