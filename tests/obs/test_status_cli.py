"""``cachebus status``: per stream and group, lag, pending, oldest pending, DLQ, last flush."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.consumers import Consumer, ConsumerConfig
from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from tests.consumer.helpers import NS, Recorder, keys_event
from tests.obs.cli_helpers import cli, cli_json


def _drain(url: str, keys: StreamKeys, group: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        config = ConsumerConfig(
            stream="inval", group=group, consumer=f"{group}-1", namespaces=NS, block_ms=100
        )
        await Consumer(client, config, [Recorder().sink()], keys=keys).run(until_idle=True)
        await client.aclose()

    asyncio.run(main())


def test_status_json_reports_the_lag_and_pending_of_a_caught_up_and_a_lagging_group(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    # Given two services' groups: "api" runs a real consumer, "bot" is stuck mid-batch
    stream = stream_keys.stream("inval")
    _drain(redis_url, stream_keys, "api")  # creates its group at the end (and flushes)
    redis_client.xgroup_create(stream, "bot", id="$")
    added_at = time.time()
    ids = [
        redis_client.xadd(stream, encode_event(keys_event("prices", str(i))))  # type: ignore[arg-type]
        for i in range(10)
    ]
    _drain(redis_url, stream_keys, "api")
    # bot read 4 entries and acked only the first: 3 pending, 6 never read
    redis_client.xreadgroup("bot", "bot-1", {stream: ">"}, count=4)
    redis_client.xack(stream, "bot", ids[0])

    # When the operator asks for the status
    code, doc = cli_json("status", "--redis-url", redis_url, "--prefix", prefix)
    since_added = time.time() - added_at

    # Then each group's lag and pending are right, and the laggard's oldest pending is entry 2
    assert code == 0
    (s,) = doc["streams"]
    assert s["key"] == stream and s["length"] == 10 and s["entries_added"] == 10
    groups = {g["name"]: g for g in s["groups"]}
    assert (groups["api"]["lag"], groups["api"]["pending"]) == (0, 0)
    assert (groups["bot"]["lag"], groups["bot"]["pending"]) == (6, 3)
    assert groups["bot"]["oldest_pending_id"] == ids[1].decode()
    # its age is that of entry 2, added during this test (ids are milliseconds: 0.01 s slack)
    assert 0 <= groups["bot"]["oldest_pending_age_s"] <= since_added + 0.01
    assert groups["bot"]["members"] == [
        {"name": "bot-1", "pending": 3, "idle_s": groups["bot"]["members"][0]["idle_s"]}
    ]
    # And the laggard holds back retention; the running service recorded its flush
    assert s["retention_min_id"] == ids[1].decode()
    assert groups["bot"]["holds_retention"] and not groups["api"]["holds_retention"]
    assert groups["api"]["last_flush_reason"] == "new_group"
    assert groups["api"]["flushes"] == {"new_group": 1}
    assert groups["api"]["synced"] and not groups["bot"]["synced"]
    assert groups["api"]["dlq_depth"] == 0


def test_status_of_a_missing_stream_is_an_error_naming_it(redis_url: str, prefix: str) -> None:
    result = CliRunner().invoke(
        app, ["status", "--redis-url", redis_url, "--prefix", prefix, "--stream", "x", "--json"]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"no stream {prefix}:stream:x" in result.stderr
    assert "--stream" in result.stderr


def test_status_renders_a_table_for_people(
    redis_url: str, prefix: str, stream_keys: StreamKeys
) -> None:
    _drain(redis_url, stream_keys, "api")
    code, out = cli("status", "--redis-url", redis_url, "--prefix", prefix)
    assert code == 0
    assert stream_keys.stream("inval") in out and "api" in out and "new_group" in out


def test_a_bad_stream_name_is_a_usage_error(redis_url: str) -> None:
    code, _ = cli("status", "--redis-url", redis_url, "--stream", "a:b*")
    assert code == 2
