"""``cachebus demo``: the audited system in miniature, with its faults, checked at the end.

An API service (positions, markets; transactional outbox) and price workers write the source
of truth and publish; a bot and an indexer consume, each with its Redis cache scope and an
in-process L1. Halfway the bot is SIGKILLed and restarted, and the stream's Redis is
restarted. With PostgreSQL (:mod:`cachebus.demo.postgres`), an admin also fixes risk limits
there without publishing anything, and the commit-log relay (SIGKILLed and restarted too)
invalidates them. Then the writers stop, every consumer catches up, and the demo checks: every
published event applied by every service that caches its namespace (lost: 0), every admin
transaction relayed, every cached value (L2 and L1) no older than the source (stale: 0). It
exits non-zero otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from cachebus import devredis
from cachebus.acl import DEFAULT_LAYOUT
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import SyncCache
from cachebus.demo.postgres import DATABASE_ENV, CdcLedger, DemoPostgres, open_postgres
from cachebus.demo.registry import SERVICES, demo_registry, services_of
from cachebus.demo.spec import SPEC_ENV, Spec
from cachebus.demo.tracefile import read_spans
from cachebus.demo.world import PG_NAMESPACE, World
from cachebus.producers.outbox import SQLiteOutbox
from cachebus.testing.server import free_port

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

WRITERS = ("api", "workers")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    seconds: float = 30.0
    run_dir: Path | None = None
    #: Use this Redis for everything instead of starting the two dev instances (no ACL, and
    #: the stream's Redis is not restarted: the demo cannot restart a server it did not start).
    redis_url: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    quiesce_timeout_s: float = 60.0
    #: A registry file to run on instead of the demo's own (it must declare the namespaces
    #: the demo uses).
    registry: Path | None = None
    #: False: no PostgreSQL part, as where none can be had.
    postgres: bool = True
    #: A PostgreSQL database (wal_level=logical) instead of starting the local binaries.
    database: str | None = None


@dataclass(slots=True)
class ServiceResult:
    expected: int = 0
    applied: int = 0
    lost: int = 0
    duplicates: int = 0
    stale_l2: int = 0
    l2_checked: int = 0
    stale_l1: int = 0
    l1_checked: int = 0
    group_flushes: dict[str, int] = field(default_factory=dict)
    l1_flushes: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    #: The admin fixes' events (from the commit log) and the cached risk limits.
    admin_expected: int = 0
    admin_applied: int = 0
    admin_lost: int = 0
    admin_stale: int = 0
    admin_checked: int = 0


@dataclass(slots=True)
class DemoReport:
    seconds: float
    published: dict[str, int] = field(default_factory=dict)
    services: dict[str, ServiceResult] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    trace: dict[str, Any] | None = None
    quiesced: bool = False
    run_dir: str = ""
    #: One line: which PostgreSQL the run used, or why none.
    postgres: str = ""
    #: With PostgreSQL: admin transactions and row changes, and the relay's events for them.
    admin: dict[str, Any] = field(default_factory=dict)

    @property
    def admin_relayed(self) -> bool:
        """Without PostgreSQL, vacuously; with it, one event per admin transaction."""
        if not self.admin:
            return True
        transactions, events = int(self.admin["transactions"]), int(self.admin["events"])
        return transactions > 0 and events == transactions

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.services.values())

    @property
    def stale(self) -> int:
        return sum(s.stale_l2 + s.stale_l1 for s in self.services.values())

    @property
    def passed(self) -> bool:
        return (
            self.quiesced
            and self.lost == 0
            and self.stale == 0
            and sum(self.published.values()) > 0
            and self.admin_relayed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "lost": self.lost,
            "stale_after_quiescence": self.stale,
            "quiesced": self.quiesced,
            "postgres": self.postgres,
            "admin": self.admin,
            "published": self.published,
            "services": {
                name: {k: getattr(r, k) for k in r.__dataclass_fields__}
                for name, r in self.services.items()
            },
            "timeline": [{"at_s": round(t, 1), "event": e} for t, e in self.timeline],
            "trace": self.trace,
            "seconds": self.seconds,
            "run_dir": self.run_dir,
        }


class _Cluster:
    """The processes and Redis instances of one demo run."""

    def __init__(self, config: DemoConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pair: devredis.DevRedis | None = None
        self.prefix = "cb"
        if config.redis_url:
            self.prefix = f"demo{secrets.token_hex(3)}"  # a shared Redis: keep to our own keys
        registry = str(config.registry) if config.registry else ""
        self.spec = Spec(run_dir=str(root), prefix=self.prefix, registry=registry, **config.spec)
        self.keys = StreamKeys(self.prefix)
        self.registry = demo_registry(config.registry)
        self.services = services_of(self.registry)
        self.pg: DemoPostgres | None = None
        self.ledger = CdcLedger(root / "published-cdc.log")

    def open_postgres(self) -> str:
        """The database (or why none), its table, publication and slot; the spec says so."""
        self.pg, line = open_postgres(
            enabled=self.config.postgres, database=self.config.database, registry=self.registry
        )
        if self.pg is not None:
            self.spec = dataclasses.replace(self.spec, postgres=True)
            self.pg.prepare(self.spec.shape())
            self.spec = dataclasses.replace(
                self.spec, slot=self.pg.slot, publication=self.pg.publication
            )
        return line

    # ---- Redis -------------------------------------------------------------------------
    def start_redis(self) -> None:
        if self.config.redis_url:
            return
        self.pair = devredis.start(
            devredis.DevRedisConfig(
                run_dir=self.root / "redis", stream_port=free_port(), cache_port=free_port()
            )
        )

    def url(self, role: str, instance: str) -> str:
        if self.pair is None:
            assert self.config.redis_url is not None
            return self.config.redis_url
        if role in WRITERS:
            user = DEFAULT_LAYOUT.user_name("producer")
        elif role in SERVICES:
            user = DEFAULT_LAYOUT.service_user(role)
        elif role == "cdc":  # XADD, and its position in the same MULTI/EXEC
            user = DEFAULT_LAYOUT.user_name("cdc")
        else:
            user = DEFAULT_LAYOUT.user_name("admin")
        return self.pair.url(instance, user)

    def admin(self, instance: str) -> redis.Redis:
        return redis.Redis.from_url(self.url("admin", instance), socket_timeout=5, retry=None)

    def restart_stream_redis(self) -> bool:
        if self.pair is None:
            return False
        self.pair = devredis.restart(self.pair, "stream")
        return True

    # ---- processes -----------------------------------------------------------------------
    def start(self, role: str) -> None:
        env = {
            **os.environ,
            SPEC_ENV: self.spec.to_env(),
            "CACHEBUS_REDIS_URL": self.url(role, "stream"),
            "CACHEBUS_CACHE_URL": self.url(role, "cache"),
        }
        if self.pg is not None:
            env[DATABASE_ENV] = self.pg.dsn
        if role == "admin":  # it writes the database only: nothing to publish with
            del env["CACHEBUS_REDIS_URL"], env["CACHEBUS_CACHE_URL"]
        log = open(self.root / f"{role}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "cachebus.demo.roles", role],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            log.close()

    def signal(self, role: str, sig: int) -> None:
        proc = self.procs.get(role)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    def wait(self, role: str, timeout: float) -> int | None:
        proc = self.procs[role]
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return None

    def stats(self, role: str) -> dict[str, Any]:
        try:
            return orjson.loads((self.root / f"stats-{role}.json").read_bytes())  # type: ignore[no-any-return]
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}

    def relayed(self, client: redis.Redis, transactions: int) -> bool:
        """Every admin transaction has its event logged, and Redis holds them all (the
        relay's position, written with the events, is past the last one)."""
        if self.pg is None:
            return True
        self.ledger.read()
        position = client.hget(self.keys.cdc_position(self.spec.stream, self.spec.slot), "lsn")
        reached = int(position) if position is not None else 0
        return self.ledger.row_events >= transactions and reached >= self.ledger.last_lsn

    def writers(self) -> tuple[str, ...]:
        return (*WRITERS, "admin") if self.pg is not None else WRITERS

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if self.pg is not None:
            self.pg.close()
        if self.pair is not None:
            devredis.stop(self.root / "redis")
        elif self.config.redis_url:
            self._remove_our_keys()

    def _remove_our_keys(self) -> None:
        """A shared Redis gets its keys back: everything under this run's own prefix."""
        client = redis.Redis.from_url(self.config.redis_url or "", socket_timeout=5, retry=None)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
        except redis.RedisError:
            pass  # best effort: the prefix is unique to this run
        finally:
            client.close()

    def log_tail(self, role: str) -> str:
        path = self.root / f"{role}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_demo(
    config: DemoConfig,
    progress: Callable[[dict[str, Any]], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo; ``notice`` gets the one line saying which PostgreSQL (or why none)."""
    root = config.run_dir or Path(".demo") / time.strftime("run-%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    report = DemoReport(seconds=config.seconds, run_dir=str(root))
    run = _Cluster(config, root)
    try:
        # PostgreSQL first: a --database that cannot be used is refused before Redis starts.
        report.postgres = run.open_postgres()
        if notice is not None:
            notice(report.postgres)
        run.start_redis()
        World(run.spec.world_path, run.spec.shape()).create()
        asyncio.run(_create_outbox(run.spec))
        started = time.monotonic()

        def mark(event: str) -> None:
            report.timeline.append((time.monotonic() - started, event))

        for name in SERVICES:
            run.start(name)
        for name in SERVICES:
            _wait_for(lambda n=name: bool(run.stats(n).get("ready")), 30, f"{name} to be ready")  # type: ignore[misc]
        mark("bot and indexer ready: groups created, L1 broadcast placed")
        writers = _start_writers(run, mark)
        load_started = time.monotonic()
        _drive_load(run, config, load_started, mark, progress, report)
        for name in writers:
            run.signal(name, signal.SIGTERM)
        for name in writers:
            if run.wait(name, 60) != 0:
                raise RuntimeError(f"{name} did not stop cleanly:\n{run.log_tail(name)}")
        mark("writers stopped; outbox drained")
        report.quiesced = _quiesce(run, config.quiesce_timeout_s, progress, report, load_started)
        mark("quiescence" if report.quiesced else "no quiescence within the timeout")
        if report.quiesced:
            mark(_refill(run))
        _verify(run, report)
        consumers = (*SERVICES, "cdc") if run.pg is not None else SERVICES
        for name in consumers:
            run.signal(name, signal.SIGTERM)
        for name in consumers:
            run.wait(name, 20)
        _collect(run, report)
        if run.pg is not None and (problem := run.pg.close()):
            mark(problem)
        return report
    finally:
        run.close()


def _start_writers(run: _Cluster, mark: Callable[[str], None]) -> tuple[str, ...]:
    """The relay (with PostgreSQL), then the writers; returns once all of them write."""
    writers = run.writers()
    if run.pg is not None:
        run.start("cdc")
        _wait_for(lambda: bool(run.stats("cdc").get("streaming")), 30, "cdc to stream")
        mark("cdc relay streaming from its slot")
    for name in writers:
        run.start(name)
    # The load's clock starts once both writers are writing: on a loaded machine their
    # imports take seconds, and a SIGTERM landing before their handler exists killed a
    # writer outright ("did not stop cleanly", with nothing in its log).
    for name in writers:
        _wait_for(lambda n=name: bool(run.stats(n)), 30, f"{name} to start writing")  # type: ignore[misc]
    mark(f"{', '.join(writers)} writing")
    return writers


def _drive_load(
    run: _Cluster,
    config: DemoConfig,
    load_started: float,
    mark: Callable[[str], None],
    progress: Callable[[dict[str, Any]], None] | None,
    report: DemoReport,
) -> None:
    """The load phase and its faults: the bot killed then restarted, the stream's Redis too."""
    faults: list[tuple[float, Callable[[], str]]] = [
        (0.4 * config.seconds, lambda: _kill(run, "bot")),
        (0.4 * config.seconds + 2.0, lambda: _restart(run, "bot")),
        (0.6 * config.seconds, lambda: _restart_stream(run)),
    ]
    if run.pg is not None:
        faults += [
            (0.5 * config.seconds, lambda: _kill(run, "cdc")),
            (0.5 * config.seconds + 1.0, lambda: _restart_cdc(run)),
        ]
        faults.sort(key=lambda fault: fault[0])
    while (elapsed := time.monotonic() - load_started) < config.seconds:
        while faults and elapsed >= faults[0][0]:
            mark(faults.pop(0)[1]())
        if progress is not None:
            progress(_snapshot(run, elapsed, report))
        time.sleep(0.25)
    # A run shorter than the schedule (--seconds 3: the restart falls due at 3.2 s) still
    # gets every fault, the bot's restart included; it stayed dead and the check timed out.
    for _, fault in faults:
        mark(fault())


def _kill(run: _Cluster, role: str) -> str:
    run.signal(role, signal.SIGKILL)
    run.wait(role, 10)
    return f"{role} SIGKILLed"


def _restart(run: _Cluster, role: str) -> str:
    run.start(role)
    return f"{role} restarted (same member name: it replays its pending entries)"


def _restart_cdc(run: _Cluster) -> str:
    run.start("cdc")
    return "cdc restarted (the slot kept what it had not confirmed: same event ids)"


def _restart_stream(run: _Cluster) -> str:
    if run.restart_stream_redis():
        return "stream Redis restarted (AOF reloaded)"
    return "stream Redis not restarted (an external Redis: --redis-url)"


async def _create_outbox(spec: Spec) -> None:
    outbox = SQLiteOutbox(spec.world_path, stream=spec.stream, registry=spec.load_registry())
    await outbox.create_schema()
    await outbox.close()


def _snapshot(run: _Cluster, elapsed: float, report: DemoReport) -> dict[str, Any]:
    return {
        "elapsed": elapsed,
        "stats": {role: run.stats(role) for role in (*WRITERS, "admin", "cdc", *SERVICES)},
        "timeline": list(report.timeline),
    }


def _quiesce(
    run: _Cluster,
    timeout: float,
    progress: Callable[[dict[str, Any]], None] | None,
    report: DemoReport,
    load_started: float,
) -> bool:
    """Every group caught up (no lag, nothing pending), the outbox empty, and (PostgreSQL)
    an event in the stream for every admin transaction."""
    deadline = time.monotonic() + timeout
    stream_key = run.keys.stream(run.spec.stream)
    admin_transactions = int(run.stats("admin").get("writes", 0))
    while time.monotonic() < deadline:
        if progress is not None:
            progress(_snapshot(run, time.monotonic() - load_started, report))
        try:
            client = run.admin("stream")
            try:
                # Counted before the groups are read: a relayed event the groups' figures
                # do not include yet would otherwise pass for applied.
                relayed = run.relayed(client, admin_transactions)
                groups = {g["name"].decode(): g for g in client.xinfo_groups(stream_key)}
                length = client.xinfo_stream(stream_key)["entries-added"]
            finally:
                client.close()
        except redis.RedisError:
            time.sleep(0.5)
            continue
        caught_up = all(
            (g := groups.get(name)) is not None
            and g["pending"] == 0
            and (g["lag"] == 0 or (g["lag"] is None and g["entries-read"] == length))
            for name in SERVICES
        )
        with sqlite3.connect(run.spec.world_path, timeout=30) as db:
            unsent = db.execute(
                "SELECT COUNT(*) FROM cachebus_outbox WHERE sent_at_ms IS NULL"
            ).fetchone()[0]
        if caught_up and unsent == 0 and relayed:
            time.sleep(1.0)  # the last batch's observers write their logs after the apply
            return True
        time.sleep(0.25)
    return False


def _refill(run: _Cluster, timeout: float = 60.0) -> str:
    """Wait until each service has read each of its items about twice since quiescence.

    Invalidations emptied the caches up to the end; how much the readers refilled by then
    depended on the machine's load (a starved bot held 40 L1 entries, or 400). Reads from
    now on fill, they never invalidate: entries cached before quiescence, the ones that could
    be stale, stay as they are for the check.
    """
    shape = run.spec.shape()
    goal = {name: len(shape.refs_of(ns)) * 2 for name, ns in run.services.items()}
    start = {name: int(run.stats(name).get("reads", 0)) for name in run.services}

    def read_enough() -> bool:
        return all(
            int(run.stats(name).get("reads", 0)) - start[name] >= goal[name] for name in goal
        )

    _wait_for(read_enough, timeout, "the services to read their items after quiescence")
    return "caches refilled: " + ", ".join(f"{name} read {n:,}" for name, n in goal.items())


def _verify(run: _Cluster, report: DemoReport) -> None:
    """After quiescence: L1s checked in their processes, L2s here, against the source."""
    for name in SERVICES:
        (run.root / f"verify-{name}.json").unlink(missing_ok=True)
        run.signal(name, signal.SIGUSR1)
    truth = World(run.spec.world_path).versions()
    if run.pg is not None:
        truth.update(run.pg.versions())
    shape = run.spec.shape()
    client = run.admin("cache")
    try:
        for name, namespaces in run.services.items():
            result = report.services.setdefault(name, ServiceResult())
            space = KeySpace(prefix=run.prefix, scope=name, registry=run.registry)
            cache = SyncCache(client, space)
            for ref in shape.refs_of(namespaces):
                value = cache.get(ref.namespace, ref.id, type=dict[str, int])
                if value is None:
                    continue
                result.l2_checked += 1
                stale = value["v"] < truth[(ref.namespace, ref.id)]
                result.stale_l2 += stale
                if ref.namespace == PG_NAMESPACE:
                    result.admin_checked += 1
                    result.admin_stale += stale
    finally:
        client.close()
    for name in SERVICES:
        path = run.root / f"verify-{name}.json"
        _wait_for(path.exists, 20, f"{name}'s L1 check")
        checked = orjson.loads(path.read_bytes())
        result = report.services[name]
        result.l1_checked = int(checked["l1_entries"])
        result.stale_l1 = int(checked["l1_stale"])
        result.admin_checked += int(checked["l1_admin_entries"])
        result.admin_stale += int(checked["l1_admin_stale"])


def _published(run: _Cluster) -> dict[str, str]:
    """Every event the writers published: ``{event_id: namespace}``."""
    events: dict[str, str] = {}
    with sqlite3.connect(run.spec.world_path, timeout=30) as db:
        for event_id, payload in db.execute(
            "SELECT event_id, payload FROM cachebus_outbox WHERE sent_at_ms IS NOT NULL"
        ):
            events[event_id] = orjson.loads(payload)["namespace"]
    ledger = run.root / "published-workers.log"
    if ledger.exists():
        for line in ledger.read_bytes().splitlines():
            parts = line.decode(errors="replace").split()
            if len(parts) == 2:
                events[parts[0]] = parts[1]
    return events


def _collect(run: _Cluster, report: DemoReport) -> None:
    published = _published(run)
    with sqlite3.connect(run.spec.world_path, timeout=30) as db:
        report.published["api"] = db.execute(
            "SELECT COUNT(*) FROM cachebus_outbox WHERE sent_at_ms IS NOT NULL"
        ).fetchone()[0]
    report.published["workers"] = len(published) - report.published["api"]
    client = run.admin("stream")
    if run.pg is not None:
        ledger = run.ledger.read()
        published.update(ledger.events)
        report.published["cdc"] = len(ledger.events)
        report.admin = {
            "transactions": int(run.stats("admin").get("writes", 0)),
            "changes": sum(run.pg.versions().values()),  # each change added one to a version
            "events": ledger.row_events,
            "gap_flushes": len(ledger.gaps),
        }
    try:
        for name, namespaces in run.services.items():
            result = report.services.setdefault(name, ServiceResult())
            expected = {eid for eid, ns in published.items() if ns in namespaces}
            seen: list[str] = []
            latencies: list[float] = []
            log = run.root / f"applied-{name}.log"
            for line in log.read_bytes().splitlines() if log.exists() else ():
                parts = line.decode(errors="replace").split()
                if len(parts) == 3:
                    seen.append(parts[0])
                    latencies.append(float(parts[2]))
            result.expected = len(expected)
            result.applied = len(expected & set(seen))
            result.lost = len(expected - set(seen))
            relayed = {eid for eid, ns in run.ledger.events.items() if ns in namespaces}
            result.admin_expected = len(relayed)
            result.admin_applied = len(relayed & set(seen))
            result.admin_lost = len(relayed - set(seen))
            result.duplicates = len(seen) - len(set(seen))
            if latencies:
                ordered = sorted(latencies)
                result.p50_ms = round(statistics.median(ordered), 1)
                result.p99_ms = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)
            meta: dict[bytes, bytes] = client.hgetall(  # type: ignore[assignment]
                run.keys.group_meta(run.spec.stream, name)
            )
            result.group_flushes = {
                k.decode().split(":", 1)[1]: int(v)
                for k, v in meta.items()
                if k.startswith(b"flushes:")
            }
            result.l1_flushes = run.stats(name).get("l1_flushes", {})
    finally:
        client.close()
    report.trace = _example_trace(run.root)


def _example_trace(root: Path) -> dict[str, Any] | None:
    """One invalidation followed from the producer to every cache it cleared."""
    spans = [s for path in sorted(root.glob("spans-*.jsonl")) for s in read_spans(path)]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(str(span["trace_id"]), []).append(span)
    best = None
    for trace_id, members in by_trace.items():
        services = {str(s["service"]) for s in members}
        sends = [s for s in members if str(s["name"]).startswith("send ")]
        processes = [s for s in members if str(s["name"]).startswith("process ")]
        if sends and processes:
            score = len(services)
            if best is None or score > best[0]:
                best = (score, trace_id, members)
    if best is None:
        return None
    _, trace_id, members = best
    members.sort(key=lambda s: int(str(s["start_ns"])))
    return {
        "trace_id": trace_id,
        "spans": [f"{s['service']}: {s['name']} ({s['kind'].lower()})" for s in members],
    }
