"""A group member whose apply never returns: it holds what it read, pending, until killed.

Run as ``python -m tests.consumer._stuck_member URL PREFIX``. It runs through the composition
root like any service; its second sink signals (``{PREFIX}:stuck`` = entries held) and then
blocks, so the entries stay pending (heartbeated) until the test SIGKILLs the process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection

import redis.asyncio

from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Plan
from cachebus.service import ConsumerService
from tests.harness.registry import REGISTRY


class StuckSink:
    def __init__(self, url: str, key: str) -> None:
        self.client = redis.asyncio.Redis.from_url(url)
        self.key = key

    async def apply(self, plan: Plan) -> None:
        await self.client.set(self.key, len(plan.delivered))
        await asyncio.Event().wait()  # never returns: the process is SIGKILLed here

    async def flush(self, namespaces: Collection[str], reason: FlushReason) -> None:
        return None


async def main(url: str, prefix: str) -> None:
    service = ConsumerService.from_url(
        url, registry=REGISTRY, service="svc", namespaces=["prices"],
        sinks=[StuckSink(url, f"{prefix}:stuck")],
        settings={"prefix": prefix, "consumer": "dead", "min_idle_ms": 1000, "block_ms": 100,
                  "traces": False, "metrics": False},
    )  # fmt: skip
    await service.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
