"""``cachebus bench cdc``: the commit-log relay against the outbox relay and PostgreSQL itself.

One run starts its own PostgreSQL (``wal_level=logical``) and Redis, then measures:

* **latency**, commit → entry in the stream, at ``--rate`` committed transactions per second
  for ``--seconds``: a writer commits one row per transaction and stamps the moment it sends
  the transaction (as ``bench e2e`` stamps before the publish call); a reader blocked on the
  stream stamps each entry's arrival (same clock). A stamp taken once COMMIT's reply was seen
  could come after the entry's arrival (PostgreSQL streams the commit before the client reads
  its reply, and the writer may be descheduled in between: negative p50s beside a CPU hog). Two
  paths for the same load: ``cachebus cdc`` (a separate process, streaming replication) and
  the outbox (each transaction also writes its outbox row; ``cachebus outbox relay``);
* **throughput**, row changes per second: a backlog of ``--changes`` rows (transactions of
  100) waits in three slots over the same publication; the relay (in this process) drains
  one, the SQL functions path (``pg_logical_slot_get_binary_changes`` + the same decoder)
  another, and ``pg_recvlogical`` into ``/dev/null`` the third (before and after the others,
  the best of both): the floor, how fast PostgreSQL hands the changes out. ``floor_ratio``
  is the relay's share of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit, percentile
from cachebus.bench.registry import bench_registry, bench_registry_path
from cachebus.contracts.codec import decode_fields
from cachebus.contracts.keys import StreamKeys
from cachebus.testing import RedisServer, eventually
from cachebus.testing.postgres import PostgresServer

__all__ = ["cdc"]

PUBLICATION = "bench_pub"
CLI = str(Path(sys.executable).with_name("cachebus"))


class _Reader:
    """Stamps the arrival of each item's first entry in one stream (a thread, XREAD BLOCK)."""

    def __init__(self, url: str, stream: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.stream = stream
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = "0-0"
        while not self._stop.is_set():
            reply = self.client.xread({self.stream: last}, count=1000, block=100)
            now = time.time_ns()
            streams: Any = reply or []
            for _, entries in streams:
                for entry_id, fields in entries:
                    last = entry_id
                    event = decode_fields(fields).event
                    for key in getattr(event, "keys", ()):
                        self.seen.setdefault(int(key), now)

    def __enter__(self) -> _Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()


async def _write(dsn: str, rate: int, seconds: float, outbox: Any | None) -> dict[int, int]:
    """One row per transaction on an absolute schedule; {item: ns when it was sent}."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    committed: dict[int, int] = {}
    try:
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            committed[i] = time.time_ns()
            await _commit(conn, i, outbox)
    finally:
        await conn.close()
    return committed


async def _commit(conn: Any, item: int, outbox: Any | None) -> None:
    if outbox is None:
        await conn.execute("INSERT INTO bench_items (item) VALUES ($1)", item)
        return
    async with conn.transaction():
        await conn.execute("INSERT INTO bench_plain (item) VALUES ($1)", item)
        await outbox.add(conn, bench_registry()["items"].ref(item=item))


def _latency(
    dsn: str, url: str, prefix: str, command: list[str], rate: int, seconds: float, outbox: bool
) -> tuple[list[float], int]:
    from cachebus.producers.outbox import PostgresOutbox

    stream = StreamKeys(prefix).stream("inval")
    store = PostgresOutbox(dsn, registry=bench_registry(), producer_name="bench")
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        with _Reader(url, stream) as reader:
            asyncio.run(_warm_up(dsn, reader, store if outbox else None))
            committed = asyncio.run(_write(dsn, rate, seconds, store if outbox else None))
            with contextlib.suppress(AssertionError):  # the missing ones are reported
                asyncio.run(
                    eventually(lambda: len(reader.seen) > len(committed), within=30, what="all")
                )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lat = [(reader.seen[i] - t) / 1e6 for i, t in committed.items() if i in reader.seen]
    return lat, len(committed) - len(lat)


async def _warm_up(dsn: str, reader: _Reader, outbox: Any | None) -> None:
    """One transaction through the path before the clock starts (the relay is up)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)

    async def through() -> bool:
        # again until one arrives: the cdc relay reads only what follows its slot's creation
        if -1 not in reader.seen:
            await _commit(conn, -1, outbox)
            await asyncio.sleep(0.2)
        return -1 in reader.seen

    try:
        await eventually(through, within=60, what="the relay is up")
    finally:
        await conn.close()


def _sql(dsn: str, statements: list[str]) -> list[Any]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    out = []
    try:
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
            out.append(cur.fetchone() if cur.description else None)
    finally:
        conn.close()
    return out


def _throughput(server: PostgresServer, dsn: str, url: str, changes: int) -> dict[str, float]:
    from cachebus.producers.cdc import CdcConfig, CdcRelay
    from cachebus.producers.cdc.changes import TransactionBuilder
    from cachebus.producers.cdc.pgoutput import decode

    slots = ("thr_relay", "thr_sql", "thr_floor", "thr_floor_after")
    _sql(dsn, [f"SELECT pg_create_logical_replication_slot('{s}', 'pgoutput')" for s in slots])
    txns = max(1, changes // 100)
    _sql(
        dsn,
        [
            f"INSERT INTO bench_items (item) SELECT g FROM generate_series({t * 100}, "
            f"{t * 100 + 99}) g"
            for t in range(txns)
        ],
    )
    rows = txns * 100
    (end,) = _sql(dsn, ["SELECT pg_current_wal_lsn()::text"])[0]
    _sql(dsn, ["INSERT INTO bench_plain (item) VALUES (-1)"])  # WAL past the end
    out: dict[str, float] = {}
    out["floor"] = _recvlogical(server, dsn, "thr_floor", end, rows)
    # the SQL functions path, same decoder
    import psycopg2

    conn = psycopg2.connect(dsn)
    started = time.perf_counter()
    builder = TransactionBuilder(bench_registry().tables)
    cur = conn.cursor()
    cur.execute(
        "SELECT data FROM pg_logical_slot_get_binary_changes('thr_sql', NULL, NULL, "
        f"'proto_version', '1', 'publication_names', '{PUBLICATION}')"
    )
    for (data,) in cur:
        builder.feed(decode(bytes(data)))
    out["sql"] = rows / (time.perf_counter() - started)
    conn.close()
    # the relay (streaming, publishing to Redis)
    client = redis.Redis.from_url(url, socket_timeout=10)
    config = CdcConfig(dsn=dsn, slot="thr_relay", publication=PUBLICATION, max_batch=200)
    relay = CdcRelay.to_redis(config, bench_registry(), client, keys=StreamKeys("cdcthr"))
    thread = threading.Thread(target=relay.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    asyncio.run(
        eventually(lambda: relay.stats.transactions >= txns, within=300, what="relay drained")
    )
    out["relay"] = rows / (time.perf_counter() - started)
    relay.stop()
    thread.join(timeout=15)
    client.close()
    # the floor again, after: the best of both (the first reader warms the WAL's pages)
    out["floor"] = max(out["floor"], _recvlogical(server, dsn, "thr_floor_after", end, rows))
    return out


def _recvlogical(server: PostgresServer, dsn: str, slot: str, end: str, rows: int) -> float:
    """Row changes/s of pg_recvlogical draining ``slot`` up to ``end`` into /dev/null."""
    started = time.perf_counter()
    subprocess.run(
        [str(server.bindir / "pg_recvlogical"), "-d", dsn, "-S", slot, "--start",
         "-o", "proto_version=1", "-o", f"publication_names={PUBLICATION}", "-f", "/dev/null",
         "-E", end, "--no-loop"],
        check=True, timeout=300,
    )  # fmt: skip
    return rows / (time.perf_counter() - started)


@bench_app.command("cdc")
def cdc(
    rate: int = typer.Option(1000, help="Committed transactions per second (latency)."),
    seconds: float = typer.Option(5.0, help="How long each latency path is loaded."),
    changes: int = typer.Option(200_000, help="Row changes in the throughput backlog."),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Commit → stream latency (cdc vs outbox) and relay throughput vs pg_recvlogical."""
    import psycopg2  # noqa: F401 - the cdc extra, named when missing

    registry = str(bench_registry_path())
    with RedisServer() as rs, PostgresServer({"wal_sender_timeout": "60s"}) as pg:
        dsn = pg.dsn
        _sql(dsn, [
            "CREATE TABLE bench_items (id bigserial PRIMARY KEY, item bigint NOT NULL)",
            "ALTER TABLE bench_items REPLICA IDENTITY FULL",
            "CREATE TABLE bench_plain (id bigserial PRIMARY KEY, item bigint NOT NULL)",
            f"CREATE PUBLICATION {PUBLICATION} FOR TABLE bench_items",
        ])  # fmt: skip
        from cachebus.producers.outbox import PostgresOutbox

        _sql(dsn, PostgresOutbox().schema_statements())
        # The reader's stamps must not wait for a full collection over this process's
        # imports (a quarter of a second here): both paths are measured with a frozen heap.
        gc.collect()
        gc.freeze()
        cdc_cmd = [CLI, "cdc", "--database", dsn, "--redis-url", rs.url, "--prefix", "cdclat",
                   "--slot", "bench", "--publication", PUBLICATION, "--create",
                   "--registry", registry, "--log-level", "WARNING"]  # fmt: skip
        outbox_cmd = [CLI, "outbox", "relay", "--database", dsn, "--redis-url", rs.url,
                      "--prefix", "outboxlat", "--registry", registry,
                      "--log-level", "WARNING"]  # fmt: skip
        cdc_lat, cdc_lost = _latency(dsn, rs.url, "cdclat", cdc_cmd, rate, seconds, False)
        _sql(dsn, ["SELECT pg_drop_replication_slot('bench')"])
        box_lat, box_lost = _latency(dsn, rs.url, "outboxlat", outbox_cmd, rate, seconds, True)
        thr = _throughput(pg, dsn, rs.url, changes)
    rows = [
        ("cdc (streaming)", rate, cdc_lost, percentile(cdc_lat, 50), percentile(cdc_lat, 99),
         thr["relay"]),
        ("outbox relay", rate, box_lost, percentile(box_lat, 50), percentile(box_lat, 99), ""),
        ("SQL functions + decoder", "", "", "", "", thr["sql"]),
        ("floor: pg_recvlogical", "", "", "", "", thr["floor"]),
    ]  # fmt: skip
    summary = {
        "rate": rate,
        "seconds": seconds,
        "commit_p50_ms": round(percentile(cdc_lat, 50), 3),
        "commit_p99_ms": round(percentile(cdc_lat, 99), 3),
        "outbox_p50_ms": round(percentile(box_lat, 50), 3),
        "outbox_p99_ms": round(percentile(box_lat, 99), 3),
        "lost": {"cdc": cdc_lost, "outbox": box_lost},
        "changes": (changes // 100) * 100,
        "changes_per_s": round(thr["relay"]),
        "sql_changes_per_s": round(thr["sql"]),
        "floor_changes_per_s": round(thr["floor"]),
        "floor_ratio": round(thr["relay"] / thr["floor"], 3),
    }
    emit(
        f"cdc: commit → stream at {rate:,} tx/s for {seconds:g} s (ms); row changes/s",
        ["path", "tx/s", "lost", "p50", "p99", "changes/s"],
        rows,
        summary,
        as_json=json_out,
    )
