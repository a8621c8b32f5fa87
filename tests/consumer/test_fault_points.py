"""The fault-point matrix: one fault at each point of the consumer's cycle, timed, not random.

Random cuts rarely land while a read is in flight. Here the RESP-aware fault proxy acts on one
chosen command (a read of new entries with entries to deliver, the pending drain, the XACK,
XAUTOCLAIM, a cache UNLINK), and the server is paused, has its stream deleted, or restarts
into AOF loading, each at a known moment. For every point, once the fault heals:

* nothing is lost and nothing stays pending, within ``block_ms`` + 1 s (not ``min_idle_ms``,
  which is left at its 30 s default so that a claim cannot pass for a cure);
* no invalidated value is served after that bound;
* the consumer never exits, and it is ready again by that bound.

The stream client is built as ``cachebus consume`` builds it (``RedisSettings.retries = 1``,
retry on timeout): the consumer must be safe however its caller built the client.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig, ConsumerObserver, RedisCacheSink
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, CacheConfig
from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.testing import FaultProxy, RedisServer, ServerOptions
from cachebus.testing.server import free_port
from tests.consumer.helpers import NS, keys_event, publish
from tests.harness.registry import REGISTRY, REGISTRY_FILE

pytestmark = pytest.mark.fault
ROOT = Path(__file__).resolve().parents[2]

KEYS = StreamKeys("cb")
STREAM = KEYS.stream("inval")
GROUP = "svc"
BLOCK_MS = 300
REFUSE_S = 2.0
#: The promise: every entry delivered before or during a fault is applied this long after it
#: heals (one read cycle, plus a second for the reconnect and the replay).
BOUND_S = BLOCK_MS / 1000 + 1.0
HAZARD_S = 5.0  # how long a test waits for its fault to happen before it gives up


def read_new(args: list[bytes]) -> bool:
    return args[-1] == b">"


def read_pending(args: list[bytes]) -> bool:
    return args[-1] != b">"


class Errors(ConsumerObserver):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_backend_error(self, error: Exception) -> None:
        self.seen.append(str(error))


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}"[:300])


@dataclass
class Rig:
    server: RedisServer
    proxy: FaultProxy
    direct: redis.asyncio.Redis
    consumer: Consumer
    probe: Cache
    errors: Errors
    log: Lines
    task: asyncio.Future[None] | None = None
    ready: list[tuple[float, bool]] = field(default_factory=list)
    seeded: int = 0

    # ---- the consumer ----------------------------------------------------------------------
    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.consumer.run())

    async def stop(self) -> None:
        await self.consumer.stop()
        assert self.task is not None
        await self.task
        self.task = None

    async def sample_readiness(self) -> None:
        while True:
            self.ready.append((time.monotonic(), self.consumer.health().ready))
            await asyncio.sleep(0.02)

    # ---- the service's data ------------------------------------------------------------------
    async def seed(self, count: int) -> list[str]:
        """``count`` cached values that events will invalidate."""
        ids = [f"p{self.seeded + i}" for i in range(count)]
        self.seeded += count
        # A new cache each time: one that wrote before a flush would write under the old
        # generation for a while (values nobody would ever read).
        cache = Cache(self.direct, self.probe.keyspace, CacheConfig(breaker=None))
        await cache.set_many("prices", {i: {"v": i} for i in ids})
        assert len(await self.probe.get_many("prices", ids)) == count
        return ids

    async def invalidate(self, ids: list[str]) -> None:
        await publish(self.direct, KEYS, [keys_event("prices", i) for i in ids])

    async def stale(self, ids: list[str]) -> int:
        """How many of ``ids`` the cache serves. Raises when Redis cannot answer (the cache
        would report misses then, which must never pass for invalidations)."""
        await self.direct.ping()
        return len(await self.probe.get_many("prices", ids))

    async def pending(self) -> int:
        return int((await self.direct.xpending(STREAM, GROUP))["pending"])

    def sent_since(self, start: int) -> list[list[bytes]]:
        return [list(args) for _, args in self.proxy.commands[start:]]

    # ---- bounded waits -------------------------------------------------------------------
    async def until(self, check: Callable[[], Awaitable[bool]], deadline: float, what: str) -> None:
        while not await _answered(check):
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not reached in time\n{await self.diagnostics()}")
            await asyncio.sleep(0.02)

    async def hazard(self, happened: Callable[[], bool], what: str) -> None:
        async def check() -> bool:
            return happened()

        await self.until(check, time.monotonic() + HAZARD_S, f"the hazard ({what})")

    async def diagnostics(self) -> str:
        try:
            pending = await self.direct.xpending(STREAM, GROUP)
            members = await self.direct.xinfo_consumers(STREAM, GROUP)
        except redis.RedisError as exc:
            pending = members = repr(exc)  # type: ignore[assignment]
        commands = [b" ".join(args[:1] + args[-1:]).decode(errors="replace")
                    for _, args in self.proxy.commands[-12:]]  # fmt: skip
        return "\n".join(
            [
                f"running: {self.task is not None and not self.task.done()}",
                f"pending: {pending}",
                f"members: {members}",
                f"stats: {self.consumer.stats.as_dict()}",
                f"health: {self.consumer.health()}",
                f"last commands: {commands}",
                "log:",
                *self.log.lines[-15:],
            ]
        )


@asynccontextmanager
async def rig_for(server: RedisServer, **overrides: object) -> AsyncIterator[Rig]:
    proxy = FaultProxy(server.host, server.port, resp=True).start()
    settings = RedisSettings.from_url(
        proxy.url_for(server.url), socket_timeout=BLOCK_MS / 1000 + 1.0, retries=1
    )
    pool = create_async_pool(settings)  # as `cachebus consume` builds its stream client
    client = redis.asyncio.Redis(connection_pool=pool)
    direct = redis.asyncio.Redis.from_url(server.url, retry=None, socket_timeout=5)
    keyspace = KeySpace(prefix="cb", scope=GROUP, registry=REGISTRY)
    options: dict[str, object] = {
        "stream": "inval", "group": GROUP, "consumer": "c1", "namespaces": NS,
        "block_ms": BLOCK_MS, "claim_interval_s": 0.2, "housekeeping_interval_s": 0.2,
        "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "max_staleness_s": 1.0,
        "remove_idle_members_after_s": 0,
    }  # fmt: skip
    options.update(overrides)
    errors = Errors()
    consumer = Consumer(
        client,
        ConsumerConfig(**options),  # type: ignore[arg-type]
        [RedisCacheSink(Cache(client, keyspace, CacheConfig(breaker=None)))],
        keys=KEYS,
        observer=errors,
        where="stream Redis",
    )
    lines = Lines()
    logging.getLogger("cachebus").addHandler(lines)
    probe = Cache(direct, keyspace, CacheConfig(breaker=None))
    rig = Rig(server, proxy, direct, consumer, probe, errors, lines)
    sampler = asyncio.ensure_future(rig.sample_readiness())
    try:
        await consumer.run(until_idle=True)  # the group exists before anything is published
        await rig.start()
        yield rig
    finally:
        sampler.cancel()
        if rig.task is not None:
            await rig.stop()
        logging.getLogger("cachebus").removeHandler(lines)
        await client.aclose()
        await pool.aclose()
        await direct.aclose()
        proxy.close()


# ---- the points ------------------------------------------------------------------------------
# Each arms its fault, makes it happen, checks that it did, and returns when it healed and the
# ids whose values must be invalidated by then.
Point = Callable[[Rig], Awaitable[tuple[float, list[str]]]]


async def before_a_read(rig: Rig) -> tuple[float, list[str]]:
    """The connection is reset as a read of new entries is sent; the server never sees it."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("XREADGROUP", "reset_before", when=read_new, refuse_s=REFUSE_S)
    await rig.hazard(fault.fired.is_set, "a read reset before it was sent")
    await rig.invalidate(ids)  # published while the consumer is cut off
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def on_an_in_flight_read(rig: Rig) -> tuple[float, list[str]]:
    """Redis runs a read of new entries (100 to deliver), the reply is lost, then 2 s of
    refused connections (issue 17, reproduction 2)."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command(
        "XREADGROUP", "hold_request", when=read_new, then="reset_after", refuse_s=REFUSE_S
    )
    await rig.hazard(fault.matched.is_set, "a read of new entries in flight")
    await rig.invalidate(ids)  # the entries are there when the held read reaches the server
    rig.proxy.release()
    await rig.hazard(fault.fired.is_set, "the read's reply lost")
    assert await rig.pending() == 100  # delivered to c1 by the server, never received
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def on_the_pending_drain(rig: Rig) -> tuple[float, list[str]]:
    """A member restarts with entries pending; the reply of its drain (id 0) is lost."""
    ids = await rig.seed(50)
    await rig.stop()
    await rig.invalidate(ids)
    await rig.direct.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=100)  # then it died
    fault = rig.proxy.on_command("XREADGROUP", "reset_after", when=read_pending, refuse_s=REFUSE_S)
    await rig.start()
    await rig.hazard(fault.fired.is_set, "the drain's reply lost")
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def between_apply_and_ack(rig: Rig) -> tuple[float, list[str]]:
    """The batch is applied, and the connection is reset as its XACK is sent."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("XACK", "reset_before", refuse_s=REFUSE_S)
    await rig.invalidate(ids)
    await rig.hazard(fault.fired.is_set, "an XACK reset before it was sent")
    assert await rig.pending() > 0
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def on_the_xack(rig: Rig) -> tuple[float, list[str]]:
    """Redis runs the XACK; its reply is lost."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("XACK", "reset_after", refuse_s=REFUSE_S)
    await rig.invalidate(ids)
    await rig.hazard(fault.fired.is_set, "an XACK's reply lost")
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def on_xautoclaim(rig: Rig) -> tuple[float, list[str]]:
    """Redis claims a dead member's 50 entries for c1; the reply is lost."""
    ids = await rig.seed(50)
    await rig.stop()
    await rig.invalidate(ids)
    read = await rig.direct.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=100)  # then it died
    entry_ids = [entry_id for entry_id, _ in read[0][1]]
    # Idle for a minute, as if it died long ago: due for XAUTOCLAIM (min_idle 30 s).
    await rig.direct.xclaim(STREAM, GROUP, "ghost", 0, entry_ids, idle=60_000, justid=True)
    fault = rig.proxy.on_command("XAUTOCLAIM", "reset_after", refuse_s=REFUSE_S)
    await rig.start()
    await rig.hazard(fault.fired.is_set, "an XAUTOCLAIM's reply lost")
    rows = await rig.direct.xpending_range(STREAM, GROUP, "-", "+", 100, consumername="c1")
    assert len(rows) == 50  # claimed for c1 by the server, never received
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def on_a_cache_unlink(rig: Rig) -> tuple[float, list[str]]:
    """Applying a batch: the connection is reset as the cache's UNLINK is sent."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("UNLINK", "reset_before", refuse_s=REFUSE_S)
    await rig.invalidate(ids)
    await rig.hazard(fault.fired.is_set, "a cache UNLINK reset before it was sent")
    assert await rig.stale(ids) > 0
    assert fault.healed_at is not None
    return fault.healed_at, ids


async def redis_paused_during_a_read(rig: Rig) -> tuple[float, list[str]]:
    """SIGSTOP while a read of new entries is in flight, entries waiting for it (issue 17,
    reproduction 1): the server must run exactly one ``XREADGROUP ... >`` for it."""
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("XREADGROUP", "hold_request", when=read_new)
    await rig.hazard(fault.fired.is_set, "a read of new entries in flight")
    await rig.invalidate(ids)
    start = len(rig.proxy.commands)
    rig.server.pause()
    try:
        rig.proxy.release()  # the read reaches a paused server
        # The client gives up on it (socket timeout) and connects again, to a paused server.
        await rig.hazard(
            lambda: any(args[0] == b"HELLO" for args in rig.sent_since(start)),
            "a new connection while the server is paused",
        )
    finally:
        rig.server.resume()
    healed = time.monotonic()

    def reads() -> list[list[bytes]]:
        return [args for args in rig.sent_since(start) if args[0] == b"XREADGROUP"]

    await rig.hazard(lambda: len(reads()) >= 2, "the stream read again after the resume")
    released, then = reads()[:2]
    assert read_new(released)
    # No blind retry: what follows a read that failed is a replay of our pending entries (the
    # server ran the first copy when it resumed), never the same read of new entries again.
    assert not read_new(then), "XREADGROUP > was sent twice for one read"
    return healed, ids


async def stream_deleted_under_a_blocked_read(rig: Rig) -> tuple[float, list[str]]:
    """DEL of the stream while c1 is blocked in XREADGROUP (issue 17, reproduction 3): Redis
    7.0 answers UNBLOCKED; the group is recreated and the scope flushed, once."""
    stale = await rig.seed(20)  # no event for these: only the flush can invalidate them

    async def blocked() -> bool:
        clients = await rig.direct.client_list()
        return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)

    await rig.until(blocked, time.monotonic() + HAZARD_S, "c1 blocked in a read")
    await rig.direct.delete(STREAM)
    healed = time.monotonic()

    async def recovered() -> bool:
        return rig.consumer.stats.flushes["group_lost"] >= 1 and rig.consumer.health().ready

    await rig.until(recovered, healed + BOUND_S, "the group recreated and the scope flushed")
    assert rig.consumer.stats.flushes["group_lost"] == 1
    ids = await rig.seed(50)  # and the recreated group delivers what comes next
    await rig.invalidate(ids)
    return time.monotonic(), [*stale, *ids]


async def restart_into_aof_loading(rig: Rig) -> tuple[float, list[str]]:
    """Redis is killed with a batch applied but not acked, and restarts into seconds of AOF
    loading (LOADING replies) before it serves again."""
    filler = rig.direct.pipeline(transaction=False)
    for i in range(20_000):
        filler.set(f"filler:{i}", "x")
    await filler.execute()
    await rig.direct.bgrewriteaof()  # the RDB preamble is what key-load-delay slows down

    async def rewritten() -> bool:
        info = await rig.direct.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    await rig.until(rewritten, time.monotonic() + HAZARD_S, "the AOF rewritten")
    ids = await rig.seed(100)
    fault = rig.proxy.on_command("XACK", "hold_request")
    await rig.invalidate(ids)
    await rig.hazard(fault.fired.is_set, "a batch applied, its XACK not sent")
    await asyncio.to_thread(rig.server.restart)  # returns once loaded and serving
    healed = time.monotonic()
    seen = [*rig.errors.seen, *rig.log.lines]
    assert any("loading" in line.lower() for line in seen), seen[-5:]
    return healed, ids


POINTS: dict[str, Point] = {
    "before-read": before_a_read,
    "in-flight-read": on_an_in_flight_read,
    "pending-drain": on_the_pending_drain,
    "between-apply-and-ack": between_apply_and_ack,
    "xack": on_the_xack,
    "xautoclaim": on_xautoclaim,
    "cache-unlink": on_a_cache_unlink,
    "sigstop-in-flight-read": redis_paused_during_a_read,
    "del-under-blocked-read": stream_deleted_under_a_blocked_read,
    "restart-during-aof-loading": restart_into_aof_loading,
}

LOADING = ServerOptions(
    persistence="aof-always",
    extra=(("key-load-delay", "100"), ("loading-process-events-interval-bytes", "1024")),
)


@pytest.mark.parametrize("point", list(POINTS))
async def test_after_a_fault_at_each_point_nothing_is_lost_pending_or_stale_within_one_cycle(
    point: str, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(LOADING if point == "restart-during-aof-loading" else None)
    async with rig_for(server) as rig:
        await rig.until(_ready(rig), time.monotonic() + HAZARD_S, "ready before the fault")
        healed, ids = await POINTS[point](rig)
        bound = healed + BOUND_S

        async def settled() -> bool:
            return (
                await rig.pending() == 0
                and await rig.stale(ids) == 0
                and rig.consumer.health().ready
            )

        await rig.until(settled, bound, f"0 pending, 0 stale, ready within {BOUND_S}s")
        print(f"{point}: settled {time.monotonic() - healed:.2f}s after the heal")
        await asyncio.sleep(0.2)  # readiness stays true after the fault (sampled meanwhile)
        assert rig.task is not None and not rig.task.done(), await rig.diagnostics()
        assert await rig.stale(ids) == 0
        late = [t for t, ready in rig.ready if t > bound and not ready]
        assert not late, f"not ready {len(late)} times after the bound"


async def _answered(check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await check()
    except redis.ConnectionError:  # the test's own client, across a restart: ask again
        return False


def _ready(rig: Rig) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return rig.consumer.health().ready

    return check


# ---- the sidecar process: it never exits on a reply of Redis ---------------------------------
def _sidecar(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cachebus.cli", "consume", "--registry", str(REGISTRY_FILE),
             "--service", "bot", "--namespaces", "prices,market", "--redis-url", url,
             "--health-port", str(port),
             "--consumer", "bot-1", "--block-ms", str(BLOCK_MS)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _probe(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def test_the_sidecar_lives_through_its_stream_deleted_under_a_blocked_read(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "consume.log"
    proc = _sidecar(redis_server.url, port, log)
    direct = redis.asyncio.Redis.from_url(redis_server.url, retry=None, socket_timeout=5)
    stream, meta = StreamKeys("cb").stream("inval"), StreamKeys("cb").group_meta("inval", "bot")

    def fresh_cache() -> Cache:
        return Cache(
            direct, KeySpace(prefix="cb", scope="bot", registry=REGISTRY), CacheConfig(breaker=None)
        )

    async def wait(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not await check():
            assert proc.poll() is None, (
                f"the sidecar exited ({proc.returncode}):\n" + (log.read_text()[-3000:])
            )
            assert time.monotonic() < deadline, f"{what}: not in time\n{log.read_text()[-3000:]}"
            await asyncio.sleep(0.05)

    async def ready() -> bool:
        return _probe(port) == 200

    async def blocked() -> bool:
        clients = await direct.client_list()
        return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)

    async def flushed_once() -> bool:
        return await direct.hget(meta, "flushes:group_lost") == b"1"

    try:
        await wait(ready, 20, "ready")
        await fresh_cache().set("prices", "old", {"v": 1})
        await wait(blocked, HAZARD_S, "blocked in a read")
        await direct.delete(stream)  # Redis 7.0 answers the blocked read: UNBLOCKED
        await wait(flushed_once, BOUND_S + 1, "the group recreated and the scope flushed")
        assert await fresh_cache().get("prices", "old") is None
        cache = fresh_cache()
        await cache.set("prices", "new", {"v": 2})
        await publish(direct, StreamKeys("cb"), [keys_event("prices", "new")])

        async def applied() -> bool:
            return await cache.get("prices", "new") is None and _probe(port) == 200

        await wait(applied, BOUND_S + 1, "the next invalidation applied, ready")
        assert proc.poll() is None
        assert await direct.hget(meta, "flushes:group_lost") == b"1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await direct.aclose()
