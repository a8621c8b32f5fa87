"""SIGKILL a consumer process at random points, many times, while events flow: nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.contracts.codec import encode_event
from cachebus.contracts.events import KeysInvalidated
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.testing import RedisServer, eventually
from tests.harness.registry import REGISTRY

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(600)]

EVENTS = 50_000
KILLS = 20
ROOT = Path(__file__).resolve().parents[2]


class ConsumerProcess:
    """The consumer of ``_consumer_proc`` as a process, its stderr kept for a diagnosis."""

    def __init__(self, url: str, prefix: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "tests.consumer._consumer_proc", url, prefix]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""


async def test_sigkilled_consumers_lose_nothing_and_leave_nothing_pending(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = "crash"
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=10)
    keys = StreamKeys(prefix)
    stream = keys.stream("inval")
    applied_key = f"{prefix}:applied"
    space = KeySpace(prefix=prefix, scope="bot", registry=REGISTRY)
    cache = Cache(client, space)
    consumer = ConsumerProcess(redis_server.url, prefix, tmp_path / "consumer.stderr")

    async def state() -> str:
        groups = await client.xinfo_groups(stream) if await client.exists(stream) else []
        applied = await client.llen(applied_key)
        return f"groups: {groups}\napplied: {applied}\nconsumer's stderr:\n{consumer.tail()}"

    # Given the consumer created its group (one flush: a new group knows no history)
    consumer.start()
    await eventually(
        lambda: client.exists(f"{applied_key}:flushes"),
        within=60,
        what="the consumer created its group",
        diagnose=state,
    )
    # and a cached value for every event to come
    for base in range(0, EVENTS, 1000):
        await cache.set_many("prices", {f"k{i}": i for i in range(base, base + 1000)})
    events = [
        KeysInvalidated(namespace="prices", keys=(f"k{i}",), producer="api") for i in range(EVENTS)
    ]

    async def produce(batch: list[KeysInvalidated]) -> None:
        for base in range(0, len(batch), 500):
            pipe = client.pipeline(transaction=False)
            for event in batch[base : base + 500]:
                pipe.xadd(stream, encode_event(event))
            await pipe.execute()
            await asyncio.sleep(0.1)  # ~5k events/s: each life consumes while events arrive

    async def caught_up() -> bool:
        info = (await client.xinfo_groups(stream))[0]
        return bool(info["pending"] == 0 and info["lag"] == 0)

    async def holding() -> bool:
        return bool((await client.xpending(stream, "bot"))["pending"] > 0)

    rng = random.Random(7)
    kills = with_pending = 0
    started = time.monotonic()
    per_life = EVENTS // KILLS
    try:
        for life in range(KILLS):
            # Each life gets its share of the events while it runs, applies some of them (a
            # process killed while still importing would prove nothing), and dies at a random
            # point of its work, mostly while it holds entries it has not acked (the hazard).
            before = await client.llen(applied_key)
            producer = asyncio.ensure_future(
                produce(events[life * per_life : (life + 1) * per_life])
            )

            async def progressed(before: int = before) -> bool:
                return bool(await client.llen(applied_key) > before)

            await eventually(
                progressed, within=60, what="a restarted consumer applied anything", diagnose=state
            )
            held = False
            if rng.random() < 0.75:  # kill the moment it is seen holding entries
                with contextlib.suppress(AssertionError):
                    await eventually(holding, within=1.0, what="entries pending", interval=0.005)
                    held = True
            else:  # or anywhere in its work
                await asyncio.sleep(rng.uniform(0.0, 0.2))
            consumer.kill()
            with_pending += held
            kills += 1
            consumer.start()
            await producer
        # Then, once it catches up, nothing is pending and every key is gone; the bound comes
        # from the rate this machine applied events at during the run, with room.
        applied_so_far = len(set(await client.lrange(applied_key, 0, -1)))
        rate = max(applied_so_far / (time.monotonic() - started), 100.0)
        bound = 10.0 + 5.0 * (EVENTS - applied_so_far) / rate
        await eventually(caught_up, within=bound, what="the group caught up", diagnose=state)
    finally:
        consumer.kill()
    # The hazard happened: kills landed while this member held entries it had not acked.
    assert kills >= KILLS and with_pending >= KILLS // 2, (kills, with_pending)
    remaining = 0
    for base in range(0, EVENTS, 5000):
        remaining += await client.exists(
            *[space.key("prices", f"k{i}") for i in range(base, base + 5000)]
        )
    assert remaining == 0, f"{remaining} keys were never invalidated"
    applied = [x.decode() for x in await client.lrange(applied_key, 0, -1)]
    assert set(applied) == {e.event_id for e in events}
    flushes = await client.lrange(f"{applied_key}:flushes", 0, -1)
    assert flushes == [b"new_group"]
    duplicates = len(applied) - len(set(applied))
    print(
        f"\n{EVENTS} events, {kills} SIGKILLs ({with_pending} with entries pending), 0 lost, "
        f"{duplicates} duplicates applied"
    )
    await client.aclose()
