"""The commit-log relay: a logical replication slot (pgoutput) → invalidation events.

One session: check the slot (and handle a gap), start streaming with psycopg2's
``LogicalReplicationConnection``, decode each message, and at every drained socket (or every
``max_batch`` transactions) publish the committed transactions and the position in one Redis
MULTI/EXEC, then confirm the slot to PostgreSQL (standby feedback, flush LSN). A failure of
either side ends the session with nothing confirmed past what Redis holds; the next session
starts from the slot's confirmed position, skipping transactions the Redis position already
covers (so a crash between publish and confirm publishes nothing twice while Redis keeps its
data, and the same event ids when it did not).

The slot is the lease: PostgreSQL lets one session stream from it (a second one gets
SQLSTATE 55006, ``object_in_use``), so a second relay is a standby that retries until the
slot is free. A gap (the slot invalidated by ``max_slot_wal_keep_size``, missing where one
existed, or recreated behind our back) is a flush of every mapped namespace, recorded beside
the position with its reason, and a new slot.

Streaming was chosen over the SQL functions (``pg_logical_slot_peek_binary_changes``):
``cachebus bench cdc`` measures the latency of both paths.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import redis
from opentelemetry.metrics import MeterProvider

from cachebus.contracts.errors import (
    AccessDenied,
    BackendUnavailable,
    CachebusError,
    ConfigError,
    PublishError,
)
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.producers.cdc import database as db
from cachebus.producers.cdc.changes import Transaction, TransactionBuilder
from cachebus.producers.cdc.config import CdcConfig, CdcStats
from cachebus.producers.cdc.metrics import register_metrics, watch_slot
from cachebus.producers.cdc.pgoutput import decode
from cachebus.producers.cdc.publish import CdcPublisher
from cachebus.producers.cdc.slot import prepare_slot

__all__ = ["CdcRelay"]

log = logging.getLogger("cachebus.cdc")


class _Standby(Exception):
    pass


class CdcRelay:
    """Relays one slot into one stream until :meth:`stop` (blocking :meth:`run`)."""

    def __init__(
        self,
        config: CdcConfig,
        registry: Registry,
        publisher_factory: Any,
        *,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """``publisher_factory(system_id)`` returns the :class:`CdcPublisher` to use."""
        if not registry.tables:
            raise ConfigError(
                'the registry maps no table: add [tables."schema.table"] entries '
                "(namespace, key) to the registry file"
            )
        self.config = config
        self.registry = registry
        self.stats = CdcStats()
        register_metrics(self.stats, config.slot, meter_provider)
        self._publisher_factory = publisher_factory
        self.publisher: CdcPublisher | None = None
        self._stop = threading.Event()
        self._namespaces = sorted({m.namespace for m in registry.tables})
        self._tables = sorted({m.table for m in registry.tables})

    @classmethod
    def to_redis(
        cls,
        config: CdcConfig,
        registry: Registry,
        client: redis.Redis,
        *,
        stream: str = "inval",
        keys: StreamKeys | None = None,
        producer_name: str = "cdc",
        timeout: float = 10.0,
        meter_provider: MeterProvider | None = None,
    ) -> CdcRelay:
        """A relay publishing through ``client`` (a sync client you own) to ``stream``."""
        layout = keys or StreamKeys()

        def publisher(system_id: str) -> CdcPublisher:
            return CdcPublisher(
                client,
                stream=stream,
                keys=layout,
                registry=registry,
                slot=config.slot,
                system_id=system_id,
                producer_name=producer_name,
                timeout=timeout,
            )

        return cls(config, registry, publisher, meter_provider=meter_provider)

    # ---- start -------------------------------------------------------------------------
    def _connect(self, **kwargs: Any) -> Any:
        conn = psycopg2.connect(
            self.config.dsn, connect_timeout=self.config.connect_timeout_s, **kwargs
        )
        if "connection_factory" not in kwargs:
            conn.autocommit = True
        return conn

    def check(self) -> None:
        """Refuse (:class:`ConfigError`) a configuration that cannot work; touches nothing
        unless ``create`` (then the publication is created or extended)."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            db.refuse(db.check_tables(cur, self.registry.tables))
            db.refuse(
                db.ensure_publication(
                    cur, self.config.publication, self._tables, create=self.config.create
                )
            )
            if self.publisher is None:
                self.publisher = self._publisher_factory(db.system_id(cur))
        finally:
            conn.close()

    def _prepare_slot(self) -> int:
        """Make the slot usable; returns the LSN up to which transactions were published."""
        assert self.publisher is not None
        conn = self._connect()
        try:
            ready = prepare_slot(
                conn, self.config.slot, self.publisher.position(), create=self.config.create
            )
        finally:
            conn.close()
        if ready.active_pid is not None:
            raise _Standby(f"the slot {self.config.slot} is in use by pid {ready.active_pid}")
        if ready.gap:
            self._gap(ready.gap, ready.start)
        return ready.start

    def _gap(self, why: str, lsn: int) -> None:
        assert self.publisher is not None
        log.error("cdc gap: %s; flushing %s", why, ", ".join(self._namespaces))
        self.publisher.publish_gap(self._namespaces, why, lsn)
        self.stats.gaps += 1
        self.stats.last_gap = why
        self.stats.gap_reasons.append(why)

    # ---- run -----------------------------------------------------------------------------
    def run(self) -> None:
        """Relay until :meth:`stop`. Raises :class:`ConfigError` for a refused configuration."""
        delay = self.config.backoff_base_s
        while True:
            try:
                self.check()
                break
            except psycopg2.OperationalError as exc:  # not up yet: not a configuration error
                log.warning("PostgreSQL unreachable, retrying in %.1fs: %s", delay, exc)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.config.backoff_cap_s)
        watcher = threading.Thread(
            target=watch_slot,
            args=(self._stop, self.config.metrics_interval_s, self._connect, self.config.slot,
                  self.stats),
            name="cdc-slot-metrics",
            daemon=True,
        )  # fmt: skip
        watcher.start()
        try:
            self._relay()
        finally:
            self._stop.set()
            watcher.join(timeout=self.config.connect_timeout_s + 5)

    def _relay(self) -> None:
        delay = self.config.backoff_base_s
        while not self._stop.is_set():
            try:
                self._session()
                delay = self.config.backoff_base_s
            except (_Standby, psycopg2.errors.ObjectInUse) as exc:
                if not self.stats.standby:
                    log.info("standby: %s", str(exc).strip())
                self.stats.standby = True
                self._stop.wait(self.config.standby_retry_s)
            except (ConfigError, AccessDenied):
                raise  # a configuration error: the same request is refused again
            except (psycopg2.Error, PublishError, BackendUnavailable, CachebusError) as exc:
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {str(exc).strip()}"
                log.warning(
                    "cdc session ended, retrying in %.1fs: %s", delay, self.stats.last_error
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.backoff_cap_s)
            finally:
                self.stats.streaming = False

    def stop(self) -> None:
        """Ask :meth:`run` to return (within about a quarter of a second). Thread-safe."""
        self._stop.set()

    def _session(self) -> None:
        published = self._prepare_slot()
        conn = self._connect(connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            cur = conn.cursor()
            cur.start_replication(
                slot_name=self.config.slot,
                decode=False,
                options={"proto_version": "1", "publication_names": self.config.publication},
                # Feedback is ours alone (forced, after Redis recorded it): psycopg2's own
                # periodic status would report positions Redis may not hold yet.
                status_interval=3600,
            )
            self.stats.sessions += 1
            self.stats.standby = False
            self.stats.streaming = True
            log.info("streaming from slot %s", self.config.slot)
            self._stream(conn, cur, published)
        finally:
            conn.close()

    def _stream(self, conn: Any, cur: Any, published: int) -> None:
        assert self.publisher is not None
        builder = TransactionBuilder(
            self.registry.tables, max_keys=self.config.max_keys_per_transaction
        )
        pending: list[Transaction] = []
        recorded = published
        next_feedback = time.monotonic() + self.config.idle_confirm_s
        while not self._stop.is_set():
            msg = cur.read_message()
            if msg is not None:
                txn = builder.feed(decode(msg.payload))
                if txn is None:
                    continue
                if txn.end_lsn <= published:
                    self.stats.skipped += 1
                    continue
                pending.append(txn)
                if len(pending) < self.config.max_batch:
                    continue
            now = time.monotonic()
            if pending:
                recorded = published = self._publish(pending)
                pending = []
                if msg is not None:
                    continue
            if not builder.in_transaction and now >= next_feedback:
                # Caught up: everything before the server's WAL end was received and
                # published. psycopg2 moves its flush position there on a keepalive once
                # all it received was confirmed, and sends it with the next feedback: record
                # it in Redis first, so the slot never confirms past the recorded position
                # (past it at start, the slot was recreated: a gap).
                next_feedback = now + self.config.idle_confirm_s
                end = max(published, int(cur.wal_end or 0))
                if end > recorded:
                    self.publisher.record(end)
                    recorded = published = end
                cur.send_feedback(flush_lsn=recorded, force=True)
                self.stats.confirmed_lsn = recorded
            select.select([conn], [], [], 0.2)

    def _publish(self, txns: list[Transaction]) -> int:
        assert self.publisher is not None
        lsn = txns[-1].end_lsn
        sent = self.publisher.publish([t for t in txns if not t.empty], lsn)
        self.stats.transactions += len(txns)
        self.stats.changes += sum(t.changes for t in txns)
        self.stats.events += sent
        return lsn
