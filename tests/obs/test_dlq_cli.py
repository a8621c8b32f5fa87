"""``cachebus dlq``: list and show dead letters, replay them (same event_id), purge with --yes."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig
from cachebus.contracts.codec import decode_fields, encode_event
from cachebus.contracts.keys import StreamKeys
from tests.consumer.helpers import NS, Recorder, keys_event
from tests.obs.cli_helpers import cli, cli_json


def _consume(url: str, keys: StreamKeys, recorder: Recorder) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        config = ConsumerConfig(
            stream="inval", group="svc", consumer="svc-1", namespaces=NS, block_ms=100,
            max_deliveries=1, backoff_base_s=0.01,
        )  # fmt: skip
        await Consumer(client, config, [recorder.sink()], keys=keys).run(until_idle=True)
        await client.aclose()

    asyncio.run(main())


def test_dead_letters_are_listed_shown_replayed_with_their_event_id_and_purged(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    stream = stream_keys.stream("inval")
    args = ("--redis-url", redis_url, "--prefix", prefix, "--group", "svc")
    # Given a sink that refuses one event, and an entry that does not decode at all
    refused = keys_event("prices", "p1")
    recorder = Recorder(fail_on={refused.event_id})
    _consume(redis_url, stream_keys, recorder)  # creates the group
    redis_client.xadd(stream, encode_event(refused))  # type: ignore[arg-type]
    redis_client.xadd(stream, {"__data__": b"{broken"})
    _consume(redis_url, stream_keys, recorder)

    # When the operator lists the dead letters
    code, listed = cli_json("dlq", "list", *args)
    assert code == 0 and listed["depth"] == 2
    poison, apply = sorted(listed["letters"], key=lambda x: x["reason"] == "apply")
    assert (apply["reason"], apply["event_id"], apply["namespace"]) == (
        "apply",
        refused.event_id,
        "prices",
    )
    assert poison["reason"].startswith("decode:") and poison["decode_error"]
    # And shows one in full
    code, shown = cli_json("dlq", "show", apply["id"], *args)
    assert code == 0 and "refusing" in shown["error"]
    assert shown["event"]["keys"] == ["p1"]

    # When the sink is fixed and everything is replayed
    recorder.fail_on.clear()
    code, replayed = cli_json("dlq", "replay", "--all", *args)
    # Then the decodable letter went back to the stream with the same event_id; the
    # undecodable one stayed (it would only poison again)
    assert code == 0
    assert [r["id"] for r in replayed["replayed"]] == [apply["id"]]
    assert [s["id"] for s in replayed["skipped"]] == [poison["id"]]
    new_id = replayed["replayed"][0]["entry_id"]
    (entry,) = redis_client.xrange(stream, new_id, new_id)
    assert decode_fields(entry[1]).event.event_id == refused.event_id
    _consume(redis_url, stream_keys, recorder)
    assert refused.event_id in recorder.applied
    code, listed = cli_json("dlq", "list", *args)
    assert listed["depth"] == 1

    # And purging asks for --yes before deleting anything
    code, _ = cli("dlq", "purge", "--all", *args)
    assert code == 2
    assert cli_json("dlq", "list", *args)[1]["depth"] == 1
    code, purged = cli_json("dlq", "purge", "--all", "--yes", *args)
    assert code == 0 and purged["purged"] == 1
    assert cli_json("dlq", "list", *args)[1]["depth"] == 0


def test_replay_of_named_letters_and_a_dry_run(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    dlq = stream_keys.dead_letter("inval", "svc")
    ids = [
        redis_client.xadd(
            dlq, {**encode_event(keys_event("prices", str(i))), "dlq_reason": "apply"}
        )  # type: ignore[dict-item]
        for i in range(3)
    ]
    args = ("--redis-url", redis_url, "--prefix", prefix, "--group", "svc")
    code, dry = cli_json("dlq", "replay", "--id", ids[1].decode(), "--dry-run", *args)
    assert code == 0 and [r["id"] for r in dry["replayed"]] == [ids[1].decode()]
    assert redis_client.xlen(dlq) == 3 and not redis_client.exists(stream_keys.stream("inval"))
    code, done = cli_json("dlq", "replay", "--id", ids[1].decode(), *args)
    assert code == 0 and len(done["replayed"]) == 1
    assert [x[0] for x in redis_client.xrange(dlq)] == [ids[0], ids[2]]
    (entry,) = redis_client.xrange(stream_keys.stream("inval"))
    assert all(not k.startswith(b"dlq_") for k in entry[1])


def test_replay_needs_ids_or_all_and_a_group(redis_url: str, prefix: str) -> None:
    assert cli("dlq", "replay", "--group", "svc", "--redis-url", redis_url)[0] == 2
    assert cli("dlq", "list", "--redis-url", redis_url, "--prefix", prefix)[0] == 2
