"""The processes of the demo: ``python -m cachebus.demo.roles api|workers|bot|indexer``.

* ``api`` changes users' positions and markets in the source of truth and writes each
  invalidation into the transactional outbox *in the same transaction*; its relay moves the
  outbox to the stream.
* ``workers`` tick prices: commit, then publish through the producer (retrying the same event
  while Redis is away).
* ``admin`` and ``cdc`` (with PostgreSQL, :mod:`cachebus.demo.pgroles`): fixes written by
  hand without publishing, and the commit-log relay that invalidates them anyway.
* ``bot`` and ``indexer`` each own a Redis cache scope (L2, invalidated by their consumer group)
  and an in-process L1 (invalidated by a broadcast consumer that clears L2 first, then L1, so
  an L1 is never refilled from an L2 that has not seen the invalidation yet); their readers go
  L1 → L2 (``get_or_set``, lease-guarded) → source, and fill L1 with a guard token too.

Every process writes ``stats-<role>.json`` twice a second for the live view, and consumers log
every event they apply (``applied-<role>.log``, flushed before the ack) for the final count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from cachebus.consumers import ConsumerObserver
from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Delivered
from cachebus.contracts.errors import PublishError
from cachebus.contracts.keys import KeyRef, StreamKeys
from cachebus.core import Cache
from cachebus.core._tasks import cancel_and_wait
from cachebus.demo.pgroles import PgSource
from cachebus.demo.registry import SERVICES
from cachebus.demo.spec import Spec, write_stats
from cachebus.demo.tracefile import JsonLinesSpanExporter
from cachebus.demo.world import PG_NAMESPACE
from cachebus.producers import Producer
from cachebus.producers.outbox import OutboxRelay, RelayConfig, SQLiteOutbox
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings

__all__ = ["main"]


def _tracer(spec: Spec, role: str) -> TracerProvider:
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(spec.trace_ratio)),
        resource=Resource.create({"service.name": role}),
    )
    exporter = JsonLinesSpanExporter(spec.root / f"spans-{role}.jsonl", role)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    return provider


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _paced(rate: float, stop: asyncio.Event, step: Any) -> None:
    """Call ``step()`` ``rate`` times a second on an absolute schedule until ``stop``."""
    interval = 1.0 / rate
    due = time.monotonic()
    while not stop.is_set():
        await step()
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        elif delay < -1.0:
            due = time.monotonic()  # fell behind (Redis was away): do not burst to catch up


# ---- writers ------------------------------------------------------------------------------
async def api(spec: Spec) -> None:
    stop = _stop_event()
    shape = spec.shape()
    provider = _tracer(spec, "api")
    producer = Producer.from_url(
        os.environ["CACHEBUS_REDIS_URL"], spec.stream, producer_name="api",
        keys=StreamKeys(spec.prefix), registry=shape.registry, tracer_provider=provider,
    )  # fmt: skip
    outbox = SQLiteOutbox(spec.world_path, stream=spec.stream, producer_name="api",
                          relay_name="api-relay", registry=shape.registry)  # fmt: skip
    relay = OutboxRelay(outbox, producer, RelayConfig(batch_size=200, poll_interval_s=0.01))
    relay_task = asyncio.ensure_future(relay.run())
    db = await aiosqlite.connect(spec.world_path, isolation_level=None)
    await db.execute("PRAGMA busy_timeout=5000")
    writes = 0
    rng = random.Random()

    async def write() -> None:
        nonlocal writes
        refs: Sequence[Any]
        if rng.random() < 0.6:
            user = rng.randrange(shape.users)
            ref = shape.user_positions(user)
            rows = [ref]
            # Now and then the position list is invalidated by pattern (every view of the user).
            refs = [shape.user_positions_all(user)] if rng.random() < 0.1 else rows
        else:
            rows = list(shape.market_views(rng.randrange(shape.markets)))
            refs = rows
        await db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                await db.execute(
                    "UPDATE items SET version = version + 1 WHERE ns = ? AND id = ?",
                    (row.namespace, row.id),
                )
            await outbox.add(db, *refs, reason="api write")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        writes += 1

    async def report() -> None:
        while not stop.is_set():
            write_stats(spec.root / "stats-api.json",
                        {"writes": writes, "published": relay.stats.published,
                         "publish_errors": relay.stats.publish_errors})  # fmt: skip
            await asyncio.sleep(0.5)

    reporter = asyncio.ensure_future(report())
    await _paced(spec.api_rate, stop, write)
    # Stopped: hand everything written to the stream before leaving.
    await relay.stop()
    await relay_task
    await relay.run(until_empty=True)
    reporter.cancel()
    write_stats(spec.root / "stats-api.json",
                {"writes": writes, "published": relay.stats.published,
                 "publish_errors": relay.stats.publish_errors, "done": True})  # fmt: skip
    await db.close()
    await outbox.close()
    await producer.aclose()
    provider.shutdown()


async def workers(spec: Spec) -> None:
    stop = _stop_event()
    shape = spec.shape()
    provider = _tracer(spec, "workers")
    producer = Producer.from_url(
        os.environ["CACHEBUS_REDIS_URL"], spec.stream, producer_name="workers",
        keys=StreamKeys(spec.prefix), registry=shape.registry, tracer_provider=provider,
        socket_timeout=1.0,
    )  # fmt: skip
    db = await aiosqlite.connect(spec.world_path, isolation_level=None)
    await db.execute("PRAGMA busy_timeout=5000")
    # Opened once, before the loop; every line is flushed to the OS, which a SIGKILL spares.
    ledger = open(spec.root / "published-workers.log", "ab")  # noqa: SIM115, ASYNC230
    ticks = errors = 0
    rng = random.Random()

    async def tick() -> None:
        nonlocal ticks, errors
        ref = shape.price(rng.randrange(shape.markets))
        await db.execute(
            "UPDATE items SET version = version + 1 WHERE ns = ? AND id = ?",
            (ref.namespace, ref.id),
        )  # autocommit: the price is changed once this returns
        event = producer.factory.keys_event(ref.namespace, [ref.id], reason="price tick")
        while True:  # the write is done: its invalidation must go out, same event_id each try
            try:
                await producer.publish(event)
                break
            except PublishError:
                errors += 1
                await asyncio.sleep(0.1)
        ledger.write(f"{event.event_id} {ref.namespace}\n".encode())
        ledger.flush()
        ticks += 1

    async def report() -> None:
        while not stop.is_set():
            stats = {"writes": ticks, "published": ticks, "publish_errors": errors}
            write_stats(spec.root / "stats-workers.json", stats)
            await asyncio.sleep(0.5)

    reporter = asyncio.ensure_future(report())
    await _paced(spec.workers_rate, stop, tick)
    reporter.cancel()
    stats = {"writes": ticks, "published": ticks, "publish_errors": errors, "done": True}
    write_stats(spec.root / "stats-workers.json", stats)
    ledger.close()
    await db.close()
    await producer.aclose()
    provider.shutdown()


# ---- consuming services ------------------------------------------------------------------
class _AppliedLog(ConsumerObserver):
    """Applied event ids, written (and flushed to the OS) before the batch is acked."""

    def __init__(self, path: Any) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 - closed by the service at exit
        self.applied = 0
        self.flushes: dict[str, int] = {}

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        now_ms = time.time() * 1000
        lines = (
            f"{d.event.event_id} {d.event.namespace} {now_ms - d.event.created_at_ms:.1f}\n"
            for d in delivered
        )
        self.file.write("".join(lines).encode())
        self.file.flush()
        self.applied += len(delivered)

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        self.flushes[reason.value] = self.flushes.get(reason.value, 0) + 1


async def _version(db: aiosqlite.Connection, pg: PgSource, ref: KeyRef) -> int:
    """A version from the source of truth: PostgreSQL for the risk limits it holds."""
    if pg.holds(ref):
        return await pg.version(ref)
    async with db.execute(
        "SELECT version FROM items WHERE ns = ? AND id = ?", (ref.namespace, ref.id)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else -1


async def _sqlite_versions(db: aiosqlite.Connection) -> dict[tuple[str, str], int]:
    async with db.execute("SELECT ns, id, version FROM items") as cursor:
        return {(ns, ident): v for ns, ident, v in await cursor.fetchall()}


def _l1_check(l1: Any, refs: Sequence[KeyRef], truth: dict[tuple[str, str], int]) -> Any:
    """The L1's entries and those older than the source (of them, the admin-fixed ones)."""
    cached = [
        (ref, value) for ref in refs
        if (value := l1.get(ref.namespace, ref.id, type=dict[str, int])) is not None
    ]  # fmt: skip
    stale = [ref for ref, value in cached if value["v"] < truth[(ref.namespace, ref.id)]]
    return {
        "l1_entries": len(l1), "l1_stale": len(stale),
        "l1_admin_entries": sum(1 for ref, _ in cached if ref.namespace == PG_NAMESPACE),
        "l1_admin_stale": sum(1 for ref in stale if ref.namespace == PG_NAMESPACE),
    }  # fmt: skip


async def service(spec: Spec, name: str) -> None:
    stop = _stop_event()
    verify = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, verify.set)
    shape = spec.shape()
    provider = _tracer(spec, name)
    applied = _AppliedLog(spec.root / f"applied-{name}.log")
    # The composition root: group consumer (L2), broadcast consumer (L1), clients and pools.
    # Its namespaces are those whose readers name the service in the registry.
    consumers = ConsumerService(
        CachebusSettings(
            prefix=spec.prefix, stream=spec.stream, service=name, consumer=f"{name}-1",
            block_ms=500, min_idle_ms=5000, max_staleness_s=3.0, socket_timeout=2.0,
            broadcast=True, local_maxsize=5000, metrics=False, health_port=0,
        ),  # the URLs come from CACHEBUS_REDIS_URL / CACHEBUS_CACHE_URL
        registry=shape.registry, observers=[applied], tracer_provider=provider,
    )  # fmt: skip
    refs = shape.refs_of(frozenset(consumers.config.namespaces))
    await consumers.start()
    group, broadcast = consumers.consumer, consumers.broadcast
    l1, sink_cache = consumers.local, consumers.cache
    assert group is not None and broadcast is not None and l1 is not None
    assert sink_cache is not None and consumers.cache_client is not None
    # Readers degrade through a circuit breaker; the invalidation path never waits for one.
    reader_cache = Cache(consumers.cache_client, sink_cache.keyspace)
    db = await aiosqlite.connect(spec.world_path)
    await db.execute("PRAGMA busy_timeout=5000")
    pg = await PgSource.open(spec)
    reads = l1_hits = 0
    rng = random.Random()

    async def load(ref: KeyRef) -> dict[str, int]:
        await asyncio.sleep(spec.load_delay_s * rng.random() * 2)  # a slow query
        return {"v": await _version(db, pg, ref)}

    warmed = False

    def l1_fillable() -> bool:
        """L1 is filled from L2 only once the group has caught up since this process started.

        The broadcast consumer starts at the stream's end (its L1 is empty), so it will never
        see events published before that; until the group has applied those to L2, L2 may
        still hold what they invalidate, and an L1 filled from it would keep it for good.
        """
        nonlocal warmed
        if not warmed and broadcast.position is not None:
            health = group.health()
            warmed = health.ready and health.lag == 0 and not health.pending
        return warmed

    async def read() -> None:
        nonlocal reads, l1_hits
        ref = rng.choice(refs)
        token = l1.reserve()
        value = l1.get(ref.namespace, ref.id)
        if value is None:
            value = await reader_cache.get_or_set(ref.namespace, ref.id, lambda: load(ref))
            if l1_fillable():
                l1.fill(ref.namespace, ref.id, value, token)
        else:
            l1_hits += 1
        reads += 1

    reading = asyncio.Event()
    reading.set()

    async def readers() -> None:
        async def step() -> None:
            if reading.is_set():
                await read()

        await _paced(spec.read_rate, stop, step)

    async def report() -> None:
        while True:
            health = group.health()
            write_stats(spec.root / f"stats-{name}.json", {
                "ready": health.ready, "applied": applied.applied, "reads": reads,
                "l1_hits": l1_hits, "l1_size": len(l1), "lag": health.lag,
                "pending": health.pending, "group_flushes": dict(group.stats.flushes),
                "l1_flushes": dict(broadcast.stats.flushes), "refused_l1_fills": l1.refused_fills,
                "refused_l2_fills": reader_cache.stats.refused_fills,
            })  # fmt: skip
            await asyncio.sleep(0.5)

    async def verifier() -> None:
        await verify.wait()
        reading.clear()
        await asyncio.sleep(0.3)  # reads in flight finish
        truth = {**await _sqlite_versions(db), **await pg.versions()}
        write_stats(spec.root / f"verify-{name}.json", _l1_check(l1, refs, truth))

    tasks = [asyncio.ensure_future(t) for t in (readers(), report(), verifier())]
    await stop.wait()
    await consumers.stop()
    for task in tasks:
        await cancel_and_wait(task, within=5.0)
    applied.file.close()
    await db.close()
    await pg.close()
    provider.shutdown()


def main() -> None:
    role = sys.argv[1]
    spec = Spec.from_env()
    if role == "api":
        asyncio.run(api(spec))
    elif role == "workers":
        asyncio.run(workers(spec))
    elif role in SERVICES:
        asyncio.run(service(spec, role))
    elif role == "admin":
        from cachebus.demo.pgroles import admin

        asyncio.run(admin(spec))
    elif role == "cdc":
        from cachebus.demo.pgroles import cdc

        cdc(spec)
    else:
        sys.exit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
