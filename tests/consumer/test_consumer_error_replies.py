"""Error replies of a real Redis 7.0 under a running consumer: only a configuration error stops
it; everything else is counted, logged and retried, and loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.consumers import CallbackSink, Consumer, ConsumerConfig
from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Delivered
from cachebus.contracts.errors import AccessDenied
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import map_redis_errors
from cachebus.testing import RedisServer, ServerOptions
from tests.consumer.helpers import NS, Recorder, keys_event, make_consumer, publish
from tests.harness.registry import REGISTRY_FILE

pytestmark = pytest.mark.fault
KEYS = StreamKeys("cb")
STREAM = KEYS.stream("inval")
ROOT = Path(__file__).resolve().parents[2]


def client_for(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url, socket_timeout=3, retry=None)


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not reached in time"
        await asyncio.sleep(0.02)


async def test_noperm_stops_the_member_with_an_access_denied(redis_server: RedisServer) -> None:
    admin = client_for(redis_server.url)
    await admin.acl_setuser("bot", enabled=True, passwords=["+pw"], keys=["*"],
                            commands=["+@all", "-xreadgroup"])  # fmt: skip
    bot = client_for(redis_server.url.replace("redis://", "redis://bot:pw@"))
    consumer = make_consumer(bot, KEYS, Recorder())
    with pytest.raises(AccessDenied, match="ACL user lacks this right"):
        await asyncio.wait_for(consumer.run(), 5)
    await bot.aclose()
    await admin.aclose()


def test_noperm_ends_the_sidecar_with_exit_2_and_one_line(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    admin.acl_setuser("bot", enabled=True, passwords=["+pw"], keys=["*"],
                      commands=["+@all", "-xreadgroup"])  # fmt: skip
    admin.close()
    url = redis_server.url.replace("redis://", "redis://bot:pw@")
    done = subprocess.run(
        [sys.executable, "-m", "cachebus.cli", "consume", "--registry", str(REGISTRY_FILE),
         "--service", "bot", "--namespaces", "prices", "--redis-url", url, "--log-level", "ERROR"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOPERM" in lines[0] and "users.acl" in lines[0], lines
    assert "pw@" not in done.stderr


async def test_a_busy_script_is_waited_out(redis_server: RedisServer) -> None:
    admin = client_for(redis_server.url)
    await admin.config_set("busy-reply-threshold", 100)
    rec = Recorder()
    consumer = make_consumer(client_for(redis_server.url), KEYS, rec)
    await consumer.run(until_idle=True)
    task = asyncio.ensure_future(consumer.run())
    stuck = redis.asyncio.Redis.from_url(redis_server.url, retry=None, socket_timeout=30)
    script = asyncio.ensure_future(stuck.eval("while true do end", 0))

    async def busy() -> bool:
        return consumer.stats.backend_errors > 0

    await until(busy, 5, "BUSY replies seen")
    await admin.script_kill()
    with pytest.raises(redis.ResponseError):
        await script
    events = [keys_event("prices", str(i)) for i in range(20)]
    await publish(admin, KEYS, events)

    async def applied() -> bool:
        return len(rec.applied) == 20

    await until(applied, 3, "applied after the script was killed")
    assert not task.done()
    await consumer.stop()
    await task
    await stuck.aclose()
    await consumer.group.client.aclose()
    await admin.aclose()


async def test_a_replica_after_a_failover_is_retried_until_it_is_primary_again(
    redis_server: RedisServer,
) -> None:
    admin = client_for(redis_server.url)
    rec = Recorder()
    client = client_for(redis_server.url)
    consumer = make_consumer(client, KEYS, rec)
    await consumer.run(until_idle=True)
    task = asyncio.ensure_future(consumer.run())
    await publish(admin, KEYS, [keys_event("prices", "before")])
    await until(lambda: _true(len(rec.applied) == 1), 3, "the first event applied")
    # A replica of a primary that cannot be reached: it keeps its data, refuses writes.
    await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
    read_only = [keys_event("prices", "while-replica")]
    with pytest.raises(redis.ReadOnlyError):
        await publish(admin, KEYS, read_only)

    async def refused() -> bool:
        return consumer.stats.backend_errors >= 2 and not consumer.health().ready

    await until(refused, 5, "READONLY replies seen")
    await admin.execute_command("REPLICAOF", "NO", "ONE")
    await publish(admin, KEYS, [keys_event("prices", "after")])
    await until(lambda: _true(len(rec.applied) == 2), 3, "applied once primary again")
    assert not task.done() and consumer.health().ready
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1}  # the data was kept: no loss, no flush
    await consumer.stop()
    await task
    await client.aclose()
    await admin.aclose()


async def test_client_unblock_is_retried_not_taken_for_a_loss(redis_server: RedisServer) -> None:
    admin = client_for(redis_server.url)
    rec = Recorder()
    client = client_for(redis_server.url)
    consumer = make_consumer(client, KEYS, rec, block_ms=2000, min_idle_ms=5000)
    await consumer.run(until_idle=True)
    task = asyncio.ensure_future(consumer.run())

    async def blocked() -> list[int]:
        return [int(c["id"]) for c in await admin.client_list()
                if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")]  # fmt: skip

    await until(lambda: _nonempty(blocked()), 5, "blocked in a read")
    for client_id in await blocked():
        await admin.client_unblock(client_id, error=True)  # UNBLOCKED client unblocked via ...
    await publish(admin, KEYS, [keys_event("prices", "x")])
    await until(lambda: _true(len(rec.applied) == 1), 4, "applied after the unblock")
    assert rec.reasons() == {FlushReason.NEW_GROUP: 1}
    assert consumer.stats.backend_errors >= 1 and not task.done()
    await consumer.stop()
    await task
    await client.aclose()
    await admin.aclose()


async def test_an_oom_cache_fails_the_apply_then_dead_letters_and_flushes(
    redis_server: RedisServer, redis_server_factory: Callable[..., RedisServer]
) -> None:
    cache_server = redis_server_factory(ServerOptions(maxmemory_policy="noeviction"))
    cache = client_for(cache_server.url)
    for i in range(20):
        await cache.set(f"filler:{i}", b"x" * 100_000)
    await cache.config_set("maxmemory", "1mb")  # now over it, for good: writes are refused
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        await cache.set("probe", 1)
    flushes: list[FlushReason] = []

    async def tombstone(item: Delivered) -> None:  # a sink that writes: refused at OOM
        with map_redis_errors("SET tombstone", "cache Redis"):
            await cache.set(f"tomb:{item.event.event_id}", 1)

    async def on_flush(namespaces: frozenset[str], reason: FlushReason) -> None:
        flushes.append(reason)

    stream = client_for(redis_server.url)
    config = ConsumerConfig(stream="inval", group="svc", consumer="c1", namespaces=NS,
                            block_ms=100, min_idle_ms=1000, max_deliveries=2,
                            backoff_base_s=0.02, backoff_cap_s=0.1)  # fmt: skip
    consumer = Consumer(stream, config, [CallbackSink(tombstone, on_flush)], keys=KEYS)
    await consumer.run(until_idle=True)
    task = asyncio.ensure_future(consumer.run())
    await publish(stream, KEYS, [keys_event("prices", "k")])

    async def dead_lettered() -> bool:
        return consumer.stats.dead_lettered == 1

    await until(dead_lettered, 5, "dead-lettered after failed applies")
    assert consumer.stats.apply_failures >= 2
    assert FlushReason.POISON in flushes  # the namespace flushed instead
    assert (await stream.xpending(STREAM, "svc"))["pending"] == 0
    assert not task.done()
    await consumer.stop()
    await task
    await stream.aclose()
    await cache.aclose()


async def _true(value: bool) -> bool:
    return value


async def _nonempty(values: Awaitable[list[int]]) -> bool:
    return bool(await values)
