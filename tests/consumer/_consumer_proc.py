"""A consumer process for crash tests: applies to a Redis cache and logs applied event ids.

Run as ``python -m tests.consumer._consumer_proc URL PREFIX``; the test SIGKILLs it at random.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection

import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig, RedisCacheSink
from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Plan
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from tests.harness.registry import REGISTRY


class LogSink:
    """Records every applied event id (after the cache sink), to count duplicates."""

    def __init__(self, client: redis.asyncio.Redis, key: str) -> None:
        self.client, self.key = client, key

    async def apply(self, plan: Plan) -> None:
        if plan.delivered:
            await self.client.rpush(self.key, *[d.event.event_id for d in plan.delivered])

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None:
        await self.client.rpush(f"{self.key}:flushes", reason.value)


async def main(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url, socket_timeout=5, retry=None)
    cache = Cache(client, KeySpace(prefix=prefix, scope="bot", registry=REGISTRY))
    config = ConsumerConfig(
        stream="inval",
        group="bot",
        consumer="bot-1",
        namespaces=frozenset({"prices"}),
        read_count=500,
        block_ms=200,
        min_idle_ms=5000,
    )
    sinks = [RedisCacheSink(cache), LogSink(client, f"{prefix}:applied")]
    await Consumer(client, config, sinks, keys=StreamKeys(prefix)).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
