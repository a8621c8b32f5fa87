"""The ops user inspects the stream side (XINFO, XPENDING, XRANGE, INFO...) and writes nothing."""

from __future__ import annotations

from cachebus.producers import Producer
from tests.harness.registry import REGISTRY
from tests.security.conftest import Deployment, refused


async def test_the_ops_user_can_inspect_streams_groups_and_dead_letters(
    deployment: Deployment,
) -> None:
    client = deployment.async_client("bot")
    consumer = deployment.consumer(client, "bot")
    await consumer.run(until_idle=True)
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        for i in range(3):
            await producer.invalidate_keys("positions", [f"{i}:all"])
    deployment.client("producer").xadd(deployment.stream_key, {"__data__": "poison"})
    await consumer.run(until_idle=True)
    await client.aclose()
    ops = deployment.client("ops")
    stream = deployment.stream_key
    keys = deployment.keys
    assert ops.xinfo_stream(stream)["length"] == 4
    assert [g["name"] for g in ops.xinfo_groups(stream)] in ([b"bot"], ["bot"])
    assert len(ops.xinfo_consumers(stream, "bot")) == 1
    assert ops.xpending(stream, "bot")["pending"] == 0
    assert len(ops.xrange(stream)) == 4 and len(ops.xrevrange(stream, count=1)) == 1
    assert ops.xlen(stream) == 4
    assert ops.xlen(keys.dead_letter("inval", "bot")) == 1
    assert len(ops.xrange(keys.dead_letter("inval", "bot"))) == 1
    assert b"epoch" in ops.hgetall(keys.group_meta("inval", "bot"))
    assert "redis_version" in ops.info("server")
    assert ops.dbsize() > 0
    assert isinstance(ops.slowlog_get(), list)
    assert ops.client_list()
    assert ops.memory_usage(stream) > 0


def test_the_ops_user_cannot_write_consume_or_read_cache_values(deployment: Deployment) -> None:
    admin = deployment.client("admin")
    stream = deployment.stream_key
    admin.xgroup_create(stream, "bot", id="$", mkstream=True)
    entry = admin.xadd(stream, {"a": "b"})
    admin.set("cb:bot:positions:1:all", "secret value")
    ops = deployment.client("ops")
    keys = deployment.keys
    refused(lambda: ops.xadd(stream, {"a": "b"}))
    refused(lambda: ops.xreadgroup("bot", "ops", {stream: ">"}))  # reading moves the group
    refused(lambda: ops.xack(stream, "bot", entry))
    refused(lambda: ops.xclaim(stream, "bot", "ops", 0, [entry]))
    refused(lambda: ops.xgroup_create(stream, "ops", id="$"))
    refused(lambda: ops.xgroup_destroy(stream, "bot"))
    refused(lambda: ops.xtrim(stream, maxlen=0))
    refused(lambda: ops.xdel(stream, entry))
    refused(lambda: ops.delete(stream))
    refused(lambda: ops.unlink(stream))
    refused(lambda: ops.hset(keys.group_meta("inval", "bot"), "synced", "x"))
    refused(lambda: ops.get("cb:bot:positions:1:all"))  # cache values are the services'
    refused(lambda: ops.set("cb:bot:positions:1:all", "x"))
    refused(lambda: ops.eval("return 1", 0))
    refused(lambda: ops.config_get("*"))
    refused(lambda: ops.config_set("maxmemory-policy", "allkeys-lru"))
    refused(lambda: ops.flushall())
    refused(lambda: ops.execute_command("ACL", "LIST"))
    refused(lambda: ops.execute_command("SHUTDOWN"))
    assert admin.xlen(stream) == 1 and admin.get("cb:bot:positions:1:all") == b"secret value"
