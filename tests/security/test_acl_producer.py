"""The producer user: XADD on the stream through our Producer, and nothing else."""

from __future__ import annotations

import pytest

from cachebus.consumers.config import FlushReason
from cachebus.contracts.errors import PublishError
from cachebus.producers import Producer
from tests.harness.registry import REGISTRY
from tests.security.conftest import Deployment, refused


async def test_the_producer_user_publishes_every_kind_of_event_through_the_producer(
    deployment: Deployment,
) -> None:
    producer = Producer.from_url(deployment.url("producer"), producer_name="api", registry=REGISTRY)
    async with producer:
        ids = [
            await producer.invalidate_keys("positions", ["42:all"], reason="fill"),
            await producer.invalidate_pattern("positions", "42:*", reason="close"),
            await producer.flush_namespace("market", reason="resync"),
        ]
        async with producer.batch() as batch:
            batch.invalidate_keys("user", ["7:profile"])
            batch.invalidate_keys("prices", ["m1"])
    ids += batch.entry_ids
    admin = deployment.client("admin")
    stored = [entry_id.decode() for entry_id, _ in admin.xrange(deployment.stream_key)]
    assert stored == ids and len(ids) == 5


async def test_the_producer_cannot_publish_to_another_stream(deployment: Deployment) -> None:
    producer = Producer.from_url(
        deployment.url("producer"), "other", producer_name="api", registry=REGISTRY
    )
    async with producer:
        with pytest.raises(PublishError) as caught:
            await producer.invalidate_keys("positions", ["1:all"])
    # Redis refused it: surely not appended, and the message points at the ACL.
    assert caught.value.ambiguous is False
    assert "NOPERM" in str(caught.value) and "users.acl" in str(caught.value)


def test_the_producer_user_is_refused_everything_but_xadd_on_the_stream(
    deployment: Deployment,
) -> None:
    producer = deployment.client("producer")
    stream = deployment.stream_key
    producer.xadd(stream, {"__data__": "{}"})  # allowed: forging is a decode error downstream
    keys = deployment.keys
    refused(lambda: producer.xadd(keys.stream("other"), {"a": "b"}))
    refused(lambda: producer.xadd(keys.dead_letter("inval", "bot"), {"a": "b"}))
    refused(lambda: producer.delete(stream))
    refused(lambda: producer.unlink(stream))
    refused(lambda: producer.xtrim(stream, maxlen=0))
    refused(lambda: producer.xrange(stream))
    refused(lambda: producer.xreadgroup("bot", "x", {stream: ">"}))
    refused(lambda: producer.xgroup_destroy(stream, "bot"))
    refused(lambda: producer.set("cb:bot:positions:1:all", "x"))
    refused(lambda: producer.get("cb:bot:positions:1:all"))
    refused(lambda: producer.hset(keys.group_meta("inval", "bot"), "synced", "x"))
    refused(lambda: producer.flushall())
    refused(lambda: producer.config_get("*"))
    refused(lambda: producer.eval("return 1", 0))
    refused(lambda: producer.execute_command("KEYS", "*"))
    # Every refusal is in the ACL log, naming the user: an operator can see who tried what.
    log = deployment.client("admin").acl_log(count=50)
    users = {entry["username"] for entry in log}
    assert users == {deployment.user("producer")}
    assert any(entry["object"] == "flushall" for entry in log)


async def test_a_producer_trimming_the_stream_with_maxlen_0_is_turned_into_a_flush(
    deployment: Deployment,
) -> None:
    # Redis 7.0 ACLs cannot restrict arguments: XADD ... MAXLEN 0 is "just an XADD".
    client = deployment.async_client("bot")
    consumer = deployment.consumer(client, "bot")
    await consumer.run(until_idle=True)  # the group exists
    cache = deployment.cache(client, "bot")
    await cache.set("positions", "9:all", [9])
    async with Producer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        for i in range(3):
            await producer.invalidate_keys("positions", [f"{i}:all"])
    # A compromised (or buggy) producer wipes the stream before the bot read those events.
    deployment.client("producer").xadd(deployment.stream_key, {"x": "y"}, maxlen=0)
    assert deployment.client("admin").xlen(deployment.stream_key) == 0
    await consumer.run(until_idle=True)
    # Gap detection saw entries removed unread, and flushed the bot's scope: nothing stale.
    assert consumer.stats.flushes[FlushReason.TRIMMED.value] == 1
    assert await cache.get("positions", "9:all") is None
    await consumer.run(until_idle=True)
    assert consumer.stats.flushes[FlushReason.TRIMMED.value] == 1  # once, not in a loop
    await client.aclose()
