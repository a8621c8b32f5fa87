"""Each service user runs our Consumer + RedisCacheSink end to end, and nothing outside it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from cachebus.consumers import BroadcastConfig, BroadcastConsumer, LocalCacheSink
from cachebus.consumers.config import FlushReason
from cachebus.contracts.codec import encode_event
from cachebus.contracts.errors import BackendError
from cachebus.contracts.events import KeysInvalidated
from cachebus.core import Cache, LocalCache
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY
from tests.security.conftest import LAYOUT, Deployment, refused

SERVICES = [s.name for s in LAYOUT.services]


async def _seed(deployment: Deployment, admin: redis.asyncio.Redis) -> dict[str, Cache]:
    """The same values in every service's scope, written as admin."""
    caches = {name: deployment.cache(admin, name) for name in SERVICES}
    for cache in caches.values():
        await cache.set_many("positions", {"1:all": 1, "2:a": 2, "2:b": 2, "3:all": 3})
        await cache.set("market", "m1:summary", {"m": 1})
        await cache.set("prices", "m1", 0.5)
    return caches


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_user_runs_the_consumer_and_cache_sink_end_to_end(
    deployment: Deployment, service: str
) -> None:
    admin = deployment.async_client("admin")
    caches = await _seed(deployment, admin)
    client = deployment.async_client(service)
    consumer = deployment.consumer(client, service)
    await consumer.run(until_idle=True)  # creates its group: a new group flushes its scope
    assert consumer.stats.flushes[FlushReason.NEW_GROUP.value] == 1
    await _seed(deployment, admin)  # values written after that flush
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        await producer.invalidate_keys("positions", ["1:all"])
        await producer.invalidate_pattern("positions", "2:*")
        await producer.flush_namespace("market")
        await producer.invalidate_keys("prices", ["m1"])  # a namespace this service ignores
    await consumer.run(until_idle=True)
    own = caches[service]
    assert await own.get_many("positions", ["1:all", "2:a", "2:b", "3:all"]) == {"3:all": 3}
    assert await own.get("market", "m1:summary") is None
    assert await own.get("prices", "m1") == 0.5  # not one of its namespaces: untouched
    for other in SERVICES:
        if other != service:  # nobody else's cache moved
            assert len(await caches[other].get_many("positions", ["1:all", "2:a", "3:all"])) == 3
    assert consumer.stats.acked == 4 and consumer.health().ready
    await client.aclose()
    await admin.aclose()


async def test_a_service_user_claims_dead_members_entries_dead_letters_poison_and_prunes(
    deployment: Deployment,
) -> None:
    client = deployment.async_client("bot")
    consumer = deployment.consumer(client, "bot", min_idle_ms=300, remove_idle_members_after_s=0.3)
    await consumer.run(until_idle=True)
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        for i in range(5):
            await producer.invalidate_keys("positions", [f"{i}:all"])
    # A member that read 5 entries and died; then a poison entry (forged by the producer).
    stream = deployment.stream_key
    raw = deployment.client("bot")
    assert len(raw.xreadgroup("bot", "bot-dead", {stream: ">"}, count=5)[0][1]) == 5
    deployment.client("producer").xadd(stream, {"__data__": "not json"})
    await asyncio.sleep(0.5)
    await consumer.run(until_idle=True)
    stats = consumer.stats
    assert stats.claimed == 5  # XAUTOCLAIM under the ACL
    assert stats.dead_lettered == 1 and stats.flushes[FlushReason.POISON.value] == 1
    assert stats.members_removed == 1  # the Lua removal script under the ACL
    admin = deployment.client("admin")
    assert admin.xlen(deployment.keys.dead_letter("inval", "bot")) == 1
    assert admin.xpending(stream, "bot")["pending"] == 0
    members = [m["name"] for m in admin.xinfo_consumers(stream, "bot")]
    assert b"bot-dead" not in members and "bot-dead" not in members
    await client.aclose()


async def test_a_service_user_recreates_its_lost_group_and_flushes(
    deployment: Deployment,
) -> None:
    client = deployment.async_client("api")
    consumer = deployment.consumer(client, "api")
    await consumer.run(until_idle=True)
    deployment.client("admin").delete(deployment.stream_key)  # lost: eviction, restart...
    await consumer.run(until_idle=True)
    assert consumer.stats.flushes[FlushReason.GROUP_LOST.value] == 1
    groups = deployment.client("admin").xinfo_groups(deployment.stream_key)
    assert [g["name"] for g in groups] in ([b"api"], ["api"])
    await client.aclose()


async def test_retention_works_for_the_service_granted_it_and_fails_loudly_elsewhere(
    deployment: Deployment,
) -> None:
    workers_client = deployment.async_client("workers")
    workers = deployment.consumer(workers_client, "workers", retention=True)
    await workers.run(until_idle=True)
    producer = Producer.from_url(deployment.url("producer"), producer_name="api", registry=REGISTRY)
    async with producer, producer.batch() as batch:
        for i in range(300):
            batch.invalidate_keys("positions", [f"{i}:all"])
    await workers.run(until_idle=True)  # applies and acks everything
    workers.housekeeping.run_soon(retention=True)  # as if the intervals had passed
    await workers.run(until_idle=True)
    assert workers.stats.trimmed_by_retention > 0
    bot_client = deployment.async_client("bot")
    bot = deployment.consumer(bot_client, "bot", retention=True)  # not granted to the bot
    with pytest.raises(BackendError, match=r"users\.acl"):
        await bot.run(until_idle=True)
    await workers_client.aclose()
    await bot_client.aclose()


async def test_the_broadcast_consumer_runs_under_a_service_user(deployment: Deployment) -> None:
    client = deployment.async_client("bot")
    local = LocalCache(REGISTRY)
    config = BroadcastConfig(stream="inval", namespaces=frozenset({"positions"}), block_ms=50)
    consumer = BroadcastConsumer(client, config, [LocalCacheSink(local)], keys=deployment.keys)
    await consumer.run(until_idle=True)
    local.set("positions", "1:all", [1])
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        await producer.invalidate_keys("positions", ["1:all"])
    await consumer.run(until_idle=True)
    assert local.get("positions", "1:all") is None
    await client.aclose()


async def test_a_service_user_is_refused_outside_its_scope_and_its_stream_rights(
    deployment: Deployment,
) -> None:
    bot = deployment.client("bot")
    keys = deployment.keys
    stream = deployment.stream_key
    bot.xgroup_create(stream, "bot", id="$", mkstream=True)
    refused(lambda: bot.unlink(stream))
    refused(lambda: bot.delete(stream))
    refused(lambda: bot.xtrim(stream, maxlen=0))  # retention is the workers' right only
    forged = encode_event(KeysInvalidated(namespace="user", keys=("1",), producer="bot"))
    refused(lambda: bot.xadd(stream, forged))  # type: ignore[arg-type]
    refused(lambda: bot.xgroup_destroy(stream, "bot"))
    refused(lambda: bot.xgroup_setid(stream, "bot", "0"))
    refused(lambda: bot.set(stream, "x"))
    refused(lambda: bot.set("cb:api:positions:1:all", "x"))
    refused(lambda: bot.unlink("cb:api:positions:1:all"))
    refused(lambda: bot.get("cb:api:__gen__:positions"))
    refused(lambda: bot.xadd(keys.dead_letter("inval", "api"), {"a": "b"}))
    refused(lambda: bot.hset(keys.group_meta("inval", "api"), "synced", "x"))
    refused(lambda: bot.eval("return redis.call('UNLINK', KEYS[1])", 1, stream))
    refused(lambda: bot.eval("return redis.call('DEL', 'cb:api:positions:1:all')", 0))
    for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("KEYS", "*")):
        refused(lambda command=command: bot.execute_command(*command))
    refused(lambda: bot.acl_setuser("cachebus-svc-bot", enabled=True, commands=["+@all"]))
    # Through our cache API: pointed at another service's scope, the bot gets a typed error
    # that names the ACL, and nothing is deleted.
    admin = deployment.async_client("admin")
    await deployment.cache(admin, "api").set("positions", "1:all", 1)
    client = deployment.async_client("bot")
    foreign = deployment.cache(client, "api")
    with pytest.raises(BackendError, match=r"users\.acl"):
        await foreign.invalidate_keys("positions", ["1:all"])
    with pytest.raises(BackendError):
        await foreign.flush_namespace("positions")
    with pytest.raises(BackendError, match=r"users\.acl"):
        await foreign.invalidate_pattern("positions", "1:*")  # SCAN is allowed, UNLINK not
    assert await deployment.cache(admin, "api").get("positions", "1:all") == 1
    await client.aclose()
    await admin.aclose()
