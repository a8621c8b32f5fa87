"""One process of ``cachebus bench cluster``: a publisher, or the consumer of one partition.

``python -m cachebus.bench._cluster_worker publish URL PARTITIONS FIRST COUNT BATCH``
publishes one single-key event for each of keys ``k<FIRST>`` .. ``k<FIRST+COUNT-1>``, in
batches of BATCH; ``... consume URL PARTITIONS PARTITION ENTRIES COUNT`` runs the group-mode
consumer of one partition (its cache on the cluster) until it has acked ENTRIES entries.

Both print ``ready`` once connected, wait for a line on stdin (the start signal, sent to every
worker at once), then print one JSON line: ``{"start_ns": ..., "end_ns": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence

import orjson

from cachebus.bench.registry import bench_registry
from cachebus.consumers import ConsumerObserver
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core.connection import RedisSettings, create_async_cluster
from cachebus.producers import Producer
from cachebus.service import ConsumerService

PREFIX = "bench"
GROUP = "bot"
SPACE = KeySpace(prefix=PREFIX, scope=GROUP, registry=bench_registry())


def streams(partitions: int) -> StreamKeys:
    return StreamKeys(PREFIX, partitions=partitions)


class _Acked(ConsumerObserver):
    def __init__(self, target: int) -> None:
        self.target, self.acked, self.done = target, 0, asyncio.Event()

    def on_acked(self, ids: Sequence[str], started: float, ended: float) -> None:
        self.acked += len(ids)
        if self.acked >= self.target:
            self.done.set()


async def _ready_then_wait() -> int:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    return time.time_ns()


async def publish(url: str, partitions: int, first: int, count: int, batch: int) -> None:
    client = create_async_cluster(RedisSettings.from_url(url, cluster=True, socket_timeout=30))
    producer = Producer(
        client, producer_name="bench", keys=streams(partitions), registry=bench_registry()
    )
    await client.initialize()
    start = await _ready_then_wait()
    for base in range(first, first + count, batch):
        async with producer.batch() as sending:
            for i in range(base, min(base + batch, first + count)):
                sending.invalidate_keys("items", [f"k{i}"])
    end = time.time_ns()
    print(orjson.dumps({"start_ns": start, "end_ns": end}).decode(), flush=True)
    await client.aclose()


async def consume(url: str, partitions: int, partition: int, entries: int, count: int) -> None:
    acked = _Acked(entries)
    # The consumer of one partition, as a service runs it (one process per partition).
    service = ConsumerService.from_url(
        url, registry=bench_registry(), service=GROUP, namespaces=["items"], observers=[acked],
        settings={"prefix": PREFIX, "cluster": True, "partitions": partitions,
                  "partition": partition, "consumer": f"bot-{partition}", "read_count": count,
                  "block_ms": 100, "socket_timeout": 30.0, "traces": False, "metrics": False},
    )  # fmt: skip
    start = await _ready_then_wait()
    async with service:
        await acked.done.wait()
        end = time.time_ns()
    print(orjson.dumps({"start_ns": start, "end_ns": end}).decode(), flush=True)


def main(argv: Sequence[str]) -> None:
    logging.basicConfig(level=logging.ERROR)  # the expected first-read flushes are not news
    role, url, *numbers = argv
    args = [int(n) for n in numbers]
    if role == "publish":
        asyncio.run(publish(url, *args))
    elif role == "consume":
        asyncio.run(consume(url, *args))
    else:
        raise SystemExit(f"unknown role {role!r}: use publish or consume")


if __name__ == "__main__":
    main(sys.argv[1:])
