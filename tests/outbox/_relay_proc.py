"""A relay that dies mid-batch: it publishes one batch, says so, then hangs until SIGKILLed.

Run as ``python -m tests.outbox._relay_proc DATABASE_URL REDIS_URL PREFIX TABLE RELAY_NAME``.
Between its publish and its mark-sent, the test kills it: the worst moment for a relay.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from cachebus.contracts.events import Event
from cachebus.contracts.keys import StreamKeys
from cachebus.producers import Producer
from cachebus.producers.outbox import OutboxRelay, RelayConfig, open_store
from tests.harness.registry import REGISTRY


class PublishThenHang:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        entry_ids = await self.producer.publish_many(events)
        print(f"PUBLISHED {len(entry_ids)}", flush=True)
        await asyncio.sleep(120)  # killed here, before the rows are marked sent
        return entry_ids


async def main(database: str, redis_url: str, prefix: str, table: str, name: str) -> None:
    store = open_store(database, table=table, relay_name=name)
    producer = Producer.from_url(
        redis_url, producer_name="relay", keys=StreamKeys(prefix), registry=REGISTRY
    )
    async with store:
        await OutboxRelay(store, PublishThenHang(producer), RelayConfig(batch_size=100)).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
