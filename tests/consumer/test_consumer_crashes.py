"""SIGKILL a consumer process at random points, many times, while events flow: nothing is lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.testing import RedisServer
from cachecore import Cache
from contracts.codec import encode_event
from contracts.events import KeysInvalidated
from contracts.keys import KeySpace, StreamKeys

pytestmark = [pytest.mark.fault, pytest.mark.slow]

EVENTS = 50_000
KILLS = 20
ROOT = Path(__file__).resolve().parents[2]


def start(url: str, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.consumer._consumer_proc", url, prefix],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkilled_consumers_lose_nothing_and_leave_nothing_pending(
    redis_server: RedisServer,
) -> None:
    prefix = "crash"
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=10)
    keys = StreamKeys(prefix)
    space = KeySpace(prefix=prefix, scope="bot")
    cache = Cache(client, space)
    # Given the consumer created its group (one flush: a new group knows no history)
    proc = start(redis_server.url, prefix)
    deadline = time.monotonic() + 20
    while not await client.lrange(f"{prefix}:applied:flushes", 0, -1):
        assert time.monotonic() < deadline, "the consumer never created its group"
        await asyncio.sleep(0.1)
    # and a cached value for every event to come
    for base in range(0, EVENTS, 1000):
        await cache.set_many("prices", {f"k{i}": i for i in range(base, base + 1000)})
    events = [
        KeysInvalidated(namespace="prices", keys=(f"k{i}",), producer="api") for i in range(EVENTS)
    ]

    async def produce() -> None:
        for base in range(0, EVENTS, 500):
            pipe = client.pipeline(transaction=False)
            for event in events[base : base + 500]:
                pipe.xadd(keys.stream("inval"), encode_event(event))
            await pipe.execute()
            await asyncio.sleep(0.02)  # ~25k events/s: kills land mid-stream

    producer = asyncio.ensure_future(produce())
    rng = random.Random(7)
    kills = 0
    try:
        while kills < KILLS or not producer.done():
            await asyncio.sleep(rng.uniform(0.3, 1.0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            proc = start(redis_server.url, prefix)
        await producer
        # Then, once it catches up, nothing is pending and every key is gone
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = (await client.xinfo_groups(keys.stream("inval")))[0]
            if info["pending"] == 0 and info["lag"] == 0:
                break
            await asyncio.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert kills >= KILLS
    info = (await client.xinfo_groups(keys.stream("inval")))[0]
    assert info["pending"] == 0 and info["lag"] == 0
    remaining = 0
    for base in range(0, EVENTS, 5000):
        remaining += await client.exists(
            *[space.key("prices", f"k{i}") for i in range(base, base + 5000)]
        )
    assert remaining == 0, f"{remaining} keys were never invalidated"
    applied = [x.decode() for x in await client.lrange(f"{prefix}:applied", 0, -1)]
    assert set(applied) == {e.event_id for e in events}
    flushes = await client.lrange(f"{prefix}:applied:flushes", 0, -1)
    assert flushes == [b"new_group"]
    duplicates = len(applied) - len(set(applied))
    print(f"\n{EVENTS} events, {kills} SIGKILLs, 0 lost, {duplicates} duplicates applied")
    await client.aclose()
