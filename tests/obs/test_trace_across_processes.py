"""One invalidation followed from the write that caused it to the cache it cleared, across two
processes: the consumer's ``process`` span is a child of the producer's ``send`` span (same
trace), links to it, and carries the semconv and ``cachebus.*`` attributes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import RedisSettings

ROOT = Path(__file__).resolve().parents[2]


def run_side(mode: str, url: str, prefix: str, out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "tests.obs._trace_proc", mode, url, prefix, str(out)],
        cwd=ROOT,
        check=True,
        timeout=60,
        capture_output=True,
    )
    return dict(json.loads(out.read_text()))


def by_name(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith(prefix)]


def test_the_consumers_process_span_continues_the_producers_trace_in_another_process(
    redis_url: str, redis_client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    # Given a consumer group on the stream, a producer process publishes two events
    stream_key = StreamKeys(prefix).stream("inval")
    redis_client.xgroup_create(stream_key, "svc", id="$", mkstream=True)
    produced = run_side("produce", redis_url, prefix, tmp_path / "producer.json")
    # When a consumer process drains the stream
    consumed = run_side("consume", redis_url, prefix, tmp_path / "consumer.json")

    # Then each process span's parent is the send span of its event, in the producer's trace
    sends = by_name(produced["spans"], f"send {stream_key}")
    request = next(s for s in produced["spans"] if s["name"] == "PUT /positions/7")
    assert len(sends) == 2
    assert {s["parent_span_id"] for s in sends} == {request["span_id"]}
    entry_ids = produced["entry_ids"]
    processes = by_name(consumed["spans"], f"process {stream_key}")
    assert sorted(p["attributes"]["messaging.message.id"] for p in processes) == sorted(entry_ids)
    host, port = RedisSettings.from_url(redis_url).address
    for send in sends:
        entry_id = send["attributes"]["messaging.message.id"]
        (process,) = [p for p in processes if p["attributes"]["messaging.message.id"] == entry_id]
        assert process["kind"] == "CONSUMER"
        assert process["trace_id"] == send["trace_id"] == request["trace_id"]
        assert process["parent_span_id"] == send["span_id"]
        assert [(lk["trace_id"], lk["span_id"]) for lk in process["links"]] == [
            (send["trace_id"], send["span_id"])
        ]
        attrs = process["attributes"]
        assert attrs["messaging.system"] == "redis"
        assert attrs["messaging.destination.name"] == stream_key
        assert attrs["messaging.consumer.group.name"] == "svc"
        assert attrs["messaging.client.id"] == "svc-1"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["messaging.operation.name"] == "process"
        assert (attrs["server.address"], attrs["server.port"]) == (host, port)
        assert attrs["cachebus.event_id"] == send["attributes"]["cachebus.event_id"]
        assert attrs["cachebus.namespace"] == send["attributes"]["cachebus.namespace"]
        assert attrs["cachebus.delivery_count"] == 1
        assert process["start"] >= send["end"] - 5_000_000  # clocks of one host agree
    keys_process = next(p for p in processes if p["attributes"]["cachebus.kind"] == "keys")
    assert keys_process["attributes"]["cachebus.keys_count"] == 2

    # And one receive span (CLIENT) linked to both messages' creation contexts
    (receive,) = by_name(consumed["spans"], f"receive {stream_key}")
    assert receive["kind"] == "CLIENT"
    assert receive["attributes"]["messaging.batch.message_count"] == 2
    assert receive["attributes"]["messaging.operation.type"] == "receive"
    assert receive["attributes"]["messaging.operation.name"] == "xreadgroup"
    assert {
        (lk["span_id"], lk["attributes"]["messaging.message.id"]) for lk in receive["links"]
    } == {(s["span_id"], s["attributes"]["messaging.message.id"]) for s in sends}

    # And one settle span (CLIENT, ack) for the batch's XACK, linked to both messages
    (settle,) = by_name(consumed["spans"], f"settle {stream_key}")
    assert settle["kind"] == "CLIENT"
    assert settle["attributes"]["messaging.operation.type"] == "settle"
    assert settle["attributes"]["messaging.operation.name"] == "ack"
    assert settle["attributes"]["messaging.batch.message_count"] == 2
    assert {lk["span_id"] for lk in settle["links"]} == {s["span_id"] for s in sends}

    # And no attribute anywhere carries a raw key: counts only
    for span in consumed["spans"]:
        assert "7:all" not in json.dumps(span["attributes"])
        assert "7:42" not in json.dumps(span["attributes"])
    assert consumed["stats"]["applied"] == 2
