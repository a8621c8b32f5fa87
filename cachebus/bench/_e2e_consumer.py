"""The consuming side of ``cachebus bench e2e``, run in its own process.

``python -m cachebus.bench._e2e_consumer MODE URL EVENTS OUTFILE``: prints ``ready`` once it
listens, stamps ``time.time_ns()`` when each event has been applied (its key UNLINKed), and
writes ``{id: applied_ns}`` as JSON to OUTFILE once it has seen EVENTS events.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio

from cachebus.bench.registry import bench_registry
from cachebus.consumers import ConsumerObserver
from cachebus.consumers.plan import Delivered
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.service import ConsumerService

PREFIX = "e2e"
SPACE = KeySpace(prefix=PREFIX, scope="bot", registry=bench_registry())
STREAMS = StreamKeys(PREFIX)


class _Stamp(ConsumerObserver):
    def __init__(self, events: int) -> None:
        self.applied: dict[str, int] = {}
        self.events = events
        self.done = asyncio.Event()

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        now = time.time_ns()
        for item in delivered:
            self.applied[item.entry_id] = now
        if len(self.applied) >= self.events:
            self.done.set()


async def ours(url: str, events: int) -> dict[str, int]:
    stamp = _Stamp(events)
    service = ConsumerService.from_url(
        url, registry=bench_registry(), service="bot", namespaces=["items"], observers=[stamp],
        settings={"prefix": PREFIX, "consumer": "bot-1", "read_count": 100, "block_ms": 1000,
                  "socket_timeout": 5.0, "traces": False, "metrics": False},
    )  # fmt: skip
    async with service:
        if not await service.wait_ready(30.0):
            raise RuntimeError(f"the consumer did not become ready: {service.health().reasons}")
        print("ready", flush=True)
        await stamp.done.wait()
    return stamp.applied


async def raw_stream(url: str, events: int) -> dict[str, int]:
    client = redis.asyncio.Redis.from_url(url)
    stream = f"{PREFIX}:raw"
    await client.xgroup_create(stream, "bot", id="$", mkstream=True)
    print("ready", flush=True)
    applied: dict[str, int] = {}
    while len(applied) < events:
        reply: Any = await client.xreadgroup("bot", "bot-1", {stream: ">"}, count=100, block=1000)
        if not reply:
            continue
        entries = reply[0][1]
        pipe = client.pipeline(transaction=False)
        for _, fields in entries:
            pipe.unlink(fields[b"key"])
        await pipe.execute()
        now = time.time_ns()
        for _, fields in entries:
            applied[fields[b"i"].decode()] = now
        await client.xack(stream, "bot", *[entry_id for entry_id, _ in entries])
    await client.aclose()
    return applied


async def pubsub(url: str, events: int) -> dict[str, int]:
    client = redis.asyncio.Redis.from_url(url)
    sub = client.pubsub()
    await sub.subscribe(f"{PREFIX}:pubsub")
    await sub.get_message(timeout=1.0)  # the subscribe confirmation
    print("ready", flush=True)
    applied: dict[str, int] = {}
    while len(applied) < events:
        message = await sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is None:
            continue
        # Drain what has arrived, then one pipelined UNLINK: the best a subscriber can do.
        batch = [message]
        while len(batch) < 100:
            more = await sub.get_message(ignore_subscribe_messages=True, timeout=0)
            if more is None:
                break
            batch.append(more)
        pipe = client.pipeline(transaction=False)
        ids = []
        for item in batch:
            i, key = item["data"].split(b" ", 1)
            pipe.unlink(key)
            ids.append(i.decode())
        await pipe.execute()
        now = time.time_ns()
        for i in ids:
            applied[i] = now
    await sub.aclose()
    await client.aclose()
    return applied


MODES = {"cachebus": ours, "raw-stream": raw_stream, "pubsub": pubsub}

if __name__ == "__main__":
    mode, url, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    result = asyncio.run(MODES[mode](url, count))
    with open(out, "wb") as fh:
        fh.write(orjson.dumps(result))
