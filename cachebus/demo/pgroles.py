"""The demo's PostgreSQL processes (``admin``, ``cdc``) and the services' reads of it.

* ``admin`` fixes risk limits by hand: UPDATEs of ``public.risk_limits``, one row or a few in
  one transaction, and nothing else. It is not even given a Redis URL: it could not publish
  if it wanted to.
* ``cdc`` runs :class:`~cachebus.producers.cdc.CdcRelay` (what ``cachebus cdc`` runs) on the
  slot the orchestrator created before anyone wrote; SIGTERM stops it after the batch in
  flight, SIGKILL (a fault of the demo) leaves the rest to the next one, same event ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from cachebus.contracts.keys import KeyRef, StreamKeys
from cachebus.demo.postgres import CDC_PRODUCER, DATABASE_ENV, PG_TABLE
from cachebus.demo.spec import Spec, write_stats
from cachebus.demo.world import PG_NAMESPACE

if TYPE_CHECKING:
    from cachebus.producers.cdc.changes import Transaction

__all__ = ["PgSource", "admin", "cdc"]


class PgSource:
    """A service's reads of PostgreSQL (asyncpg pool), for the refs it holds: none without
    PostgreSQL, so the service reads the same way either way."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, spec: Spec) -> PgSource:
        if not spec.postgres:
            return cls(None)
        import asyncpg

        return cls(await asyncpg.create_pool(os.environ[DATABASE_ENV], min_size=1, max_size=4))

    def holds(self, ref: KeyRef) -> bool:
        return self.pool is not None and ref.namespace == PG_NAMESPACE

    async def version(self, ref: KeyRef) -> int:
        value = await self.pool.fetchval(
            f"SELECT version FROM {PG_TABLE} WHERE market_id = $1", ref.id
        )
        return -1 if value is None else int(value)

    async def versions(self) -> dict[tuple[str, str], int]:
        if self.pool is None:
            return {}
        rows = await self.pool.fetch(f"SELECT market_id, version FROM {PG_TABLE}")
        return {(PG_NAMESPACE, row[0]): int(row[1]) for row in rows}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


async def admin(spec: Spec) -> None:
    import asyncpg

    from cachebus.demo.roles import _paced, _stop_event

    stop = _stop_event()
    shape = spec.shape()
    conn = await asyncpg.connect(os.environ[DATABASE_ENV])
    transactions = changes = 0
    rng = random.Random()

    async def fix() -> None:
        nonlocal transactions, changes
        # Mostly one limit; now and then a bulk fix of a few (one event: coalesced).
        count = 1 if rng.random() < 0.8 else rng.randint(2, 4)
        rows = [shape.risk_limit(m).id for m in rng.sample(range(shape.limits), count)]
        async with conn.transaction():
            for row in rows:
                await conn.execute(
                    f"UPDATE {PG_TABLE} SET version = version + 1 WHERE market_id = $1", row
                )
        transactions += 1
        changes += count

    async def report() -> None:
        while not stop.is_set():
            stats = {"writes": transactions, "changes": changes, "published": 0}
            write_stats(spec.root / "stats-admin.json", stats)
            await asyncio.sleep(0.5)

    reporter = asyncio.ensure_future(report())
    await _paced(spec.admin_rate, stop, fix)
    reporter.cancel()
    stats = {"writes": transactions, "changes": changes, "published": 0, "done": True}
    write_stats(spec.root / "stats-admin.json", stats)
    await conn.close()


def cdc(spec: Spec) -> None:
    import redis

    from cachebus.core.connection import RedisSettings, create_sync_pool
    from cachebus.producers._core import Payload, producer_settings, publish_bound
    from cachebus.producers.cdc import CdcConfig, CdcPublisher, CdcRelay

    class _LoggedPublisher(CdcPublisher):
        """Writes each event's line to the ledger (flushed to the OS, which a SIGKILL spares)
        before sending it: the demo counts from the ledger what the relay published."""

        def __init__(self, ledger: BinaryIO, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ledger = ledger
            self._batch = (0, "row")  # the position this send records, and what it carries

        def publish(self, txns: Sequence[Transaction], lsn: int) -> int:
            self._batch = (lsn, "row")
            return super().publish(txns, lsn)

        def publish_gap(self, namespaces: Iterable[str], why: str, lsn: int) -> int:
            self._batch = (lsn, "gap")
            return super().publish_gap(namespaces, why, lsn)

        def _send(self, payloads: Sequence[Payload], extra: list[tuple[Any, ...]]) -> int:
            lsn, kind = self._batch
            lines = [f"{p['event_id']} {p['namespace']} {lsn} {kind}\n" for p in payloads]
            self.ledger.write("".join(lines).encode())
            self.ledger.flush()
            return super()._send(payloads, extra)

    # Its log says when it streams, stands by, or flushes for a gap (cdc.log).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = producer_settings(RedisSettings.from_url(os.environ["CACHEBUS_REDIS_URL"]))
    client = redis.Redis(connection_pool=create_sync_pool(settings))
    config = CdcConfig(dsn=os.environ[DATABASE_ENV], slot=spec.slot,
                       publication=spec.publication, idle_confirm_s=0.5)  # fmt: skip
    registry = spec.load_registry()
    ledger = open(spec.root / "published-cdc.log", "ab")  # noqa: SIM115 - closed at the end

    def publisher(system_id: str) -> CdcPublisher:
        return _LoggedPublisher(
            ledger, client, stream=spec.stream, keys=StreamKeys(spec.prefix), registry=registry,
            slot=spec.slot, system_id=system_id, producer_name=CDC_PRODUCER,
            timeout=publish_bound(settings),
        )  # fmt: skip

    relay = CdcRelay(config, registry, publisher)
    stopped = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        relay.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def stats(done: bool = False) -> dict[str, Any]:
        s = relay.stats
        return {"writes": s.transactions, "published": s.events, "streaming": s.streaming,
                "sessions": s.sessions, "errors": s.errors, "skipped": s.skipped,
                "gaps": s.gaps, "last_error": s.last_error, "done": done}  # fmt: skip

    def report() -> None:
        while not stopped.wait(0.5):
            write_stats(spec.root / "stats-cdc.json", stats())

    reporter = threading.Thread(target=report, name="demo-cdc-stats", daemon=True)
    reporter.start()
    write_stats(spec.root / "stats-cdc.json", stats())
    try:
        relay.run()
    finally:
        stopped.set()
        reporter.join(timeout=2)
        write_stats(spec.root / "stats-cdc.json", stats(done=True))
        ledger.close()
        client.close()
