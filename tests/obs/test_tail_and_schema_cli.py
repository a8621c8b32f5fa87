"""``cachebus tail`` follows events (filtered by namespace); ``cachebus schema`` prints the
JSON Schema and an AsyncAPI document that describe what is really on the wire."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import redis
import redis.asyncio

from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.schema import SCHEMA_DIR
from cachebus.ops.tail import TailItem, follow
from tests.consumer.helpers import flush_event, keys_event, pattern_event, publish
from tests.obs.cli_helpers import cli


def test_tail_from_the_start_shows_only_the_namespaces_asked_for(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    events = [keys_event("prices", "1"), flush_event("market"), keys_event("prices", "2"),
              pattern_event("market", "7:*"), keys_event("prices", "3")]  # fmt: skip
    for event in events:
        redis_client.xadd(stream_keys.stream("inval"), encode_event(event))  # type: ignore[arg-type]
    code, out = cli(
        "tail", "--redis-url", redis_url, "--prefix", prefix, "--from-start",
        "--namespace", "market", "--seconds", "1", "--json",
    )  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["event"]["event_id"] for x in lines] == [events[1].event_id, events[3].event_id]
    # --count stops early; a table line per event for people
    code, out = cli(
        "tail", "--redis-url", redis_url, "--prefix", prefix, "--from-start", "--count", "2",
        "-n", "prices",
    )  # fmt: skip
    assert code == 0 and out.count(" prices ") == 2 and events[2].event_id in out


async def test_follow_starts_at_the_end_and_sees_events_published_while_it_waits(
    redis_url: str, stream_keys: StreamKeys
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    await publish(client, stream_keys, [keys_event("prices", "old")])
    seen: list[TailItem] = []
    watcher = asyncio.ensure_future(
        follow(client, stream_keys.stream("inval"), seen.append, count=2, seconds=10)
    )
    await asyncio.sleep(0.3)
    await client.xadd(stream_keys.stream("inval"), {"__data__": b"garbage"})
    fresh = keys_event("market", "new")
    await publish(client, stream_keys, [fresh])
    assert await asyncio.wait_for(watcher, 10) == 2
    await client.aclose()
    assert seen[0].event is None and seen[0].error and "json" in seen[0].error
    assert seen[1].event is not None and seen[1].event.event_id == fresh.event_id


def _resolve(document: dict[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return target
    return node


def test_schema_prints_the_committed_json_schema(tmp_path: Path) -> None:
    code, out = cli("schema", "event")
    assert code == 0
    assert json.loads(out) == json.loads((SCHEMA_DIR / "invalidation-event.v1.json").read_text())
    code, out = cli("schema", "--out", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "asyncapi.json", "envelope.v1.json", "invalidation-event.v1.json",
    ]  # fmt: skip


def test_the_asyncapi_document_describes_the_real_channel_and_validates_real_events(
    prefix: str,
) -> None:
    code, out = cli("schema", "asyncapi", "--prefix", prefix, "--redis-url",
                    "redis://user:secret@cache.internal:6380/0")  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["asyncapi"] == "3.0.0"
    assert "secret" not in out and doc["servers"]["redis"]["host"] == "cache.internal:6380"
    (channel,) = doc["channels"].values()
    assert channel["address"] == StreamKeys(prefix).stream("inval")
    assert {op["action"] for op in doc["operations"].values()} == {"send", "receive"}
    message = _resolve(doc, channel["messages"]["InvalidationEvent"])
    assert message["correlationId"]["location"] == "$message.header#/correlation_id"
    # The payload schema (refs into components) accepts what the producer writes as the
    # envelope's data, and the headers schema its headers; an unknown kind is refused
    payload = {"components": doc["components"], **_resolve(doc, message["payload"])}
    for event in (keys_event("prices", "1"), pattern_event("market", "7:*"), flush_event("user")):
        envelope = orjson.loads(encode_event(event)["__data__"])
        jsonschema.validate(orjson.loads(envelope["data"]), payload)
        jsonschema.validate(envelope["headers"], message["headers"])
        assert envelope["headers"]["correlation_id"] == event.event_id
    bad = orjson.loads(orjson.loads(encode_event(flush_event("user"))["__data__"])["data"])
    bad["kind"] = "drop_table"
    try:
        jsonschema.validate(bad, payload)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("an unknown kind passed the AsyncAPI payload schema")
