"""infra/redis/stream.conf and cache.conf, loaded by a real redis-server, do what they say."""

from __future__ import annotations

import time

import redis

from cachebus.contracts.errors import PublishError
from cachebus.devredis import DevRedis
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY


def test_the_stream_instance_never_evicts_and_keeps_an_aof_fsynced_every_second(
    dev_pair: DevRedis,
) -> None:
    admin = dev_pair.client("stream")
    config = admin.config_get("*")
    assert config["maxmemory-policy"] == "noeviction"
    assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
    assert int(config["maxmemory"]) == 1 << 30
    assert config["aclfile"].endswith("users.acl")
    assert (dev_pair.config.run_dir / "stream" / "appendonlydir").is_dir()
    admin.close()


async def test_a_full_stream_instance_refuses_publishes_instead_of_evicting(
    dev_pair: DevRedis,
) -> None:
    admin = dev_pair.client("stream")
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 2 * 1024 * 1024)
    stream = "cb:stream:inval"
    before = admin.xlen(stream) if admin.exists(stream) else 0
    accepted = 0
    ids = [f"{i}:{'x' * 500}" for i in range(100)]  # ~50 KB per event
    try:
        producer = Producer.from_url(
            dev_pair.url("stream", "cachebus-producer"), producer_name="api", registry=REGISTRY
        )
        refusal: PublishError | None = None
        async with producer:
            for _ in range(1000):
                try:
                    await producer.invalidate_keys("positions", ids)
                except PublishError as exc:
                    refusal = exc
                    break
                accepted += 1
    finally:
        admin.config_set("maxmemory", "1gb")
    # Refused by Redis (OOM), so surely not appended; nothing was evicted to make room.
    assert refusal is not None, "1000 publishes of 50 KB fit in 2 MB?"
    assert refusal.ambiguous is False and "memory" in str(refusal)
    assert accepted > 0 and admin.xlen(stream) == before + accepted
    assert int(admin.info("stats")["evicted_keys"]) == 0
    admin.close()


def test_the_cache_instance_has_the_audit_settings_and_no_persistence(dev_pair: DevRedis) -> None:
    admin = dev_pair.client("cache")
    config = admin.config_get("*")
    assert int(config["maxmemory"]) == 256 * 1024 * 1024
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert set(config["notify-keyspace-events"]) == {"E", "x"}
    assert (config["appendonly"], config["save"]) == ("no", "")
    assert config["lazyfree-lazy-eviction"] == "yes"
    admin.close()


def test_the_cache_instance_evicts_under_its_cap_and_publishes_expirations(
    dev_pair: DevRedis,
) -> None:
    admin = dev_pair.client("cache")
    pubsub = admin.pubsub()
    pubsub.subscribe("__keyevent@0__:expired")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    admin.set("cb:bot:prices:m1", "0.5", px=50)
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    assert message is not None and message["data"] == b"cb:bot:prices:m1"
    pubsub.close()
    bot = redis.Redis.from_url(dev_pair.url("cache", "cachebus-svc-bot"), retry=None)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 1024 * 1024)
    try:
        for i in range(200):  # ~4 MB into a 1 MB headroom: evicted, never refused
            bot.set(f"cb:bot:market:{i}:detail", b"v" * 20_000)
    finally:
        admin.config_set("maxmemory", "256mb")
    assert int(admin.info("stats")["evicted_keys"]) > 0
    bot.close()
    admin.close()
