"""A relay SIGKILLed mid-batch, then restarted: every row reaches the stream, none with a new id."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from cachebus.contracts.codec import decode_fields
from cachebus.contracts.keys import StreamKeys
from tests.harness.registry import REGISTRY_FILE, Keys
from tests.outbox.backends import Backend, write_change

pytestmark = [pytest.mark.fault, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("cachebus"))


def stream_event_ids(client: redis.Redis, keys: StreamKeys) -> list[str]:
    return [decode_fields(f).event.event_id for _, f in client.xrange(keys.stream("inval"))]


def relay_args(backend: Backend, redis_url: str, keys: StreamKeys) -> list[str]:
    return [
        CLI, "outbox", "relay", "--database", backend.url, "--redis-url", redis_url,
        "--prefix", keys.prefix, "--table", backend.table,
        "--relay-name", "relay-1", "--batch-size", "50", "--log-level", "WARNING",
        "--registry", str(REGISTRY_FILE),
    ]  # fmt: skip


async def add_changes(backend: Backend, start: int, count: int) -> list[str]:
    store = backend.store(producer_name="api")
    async with backend.service() as conn:
        ids: list[str] = []
        for n in range(start, start + count):
            await write_change(backend, conn, f"acct{n}", n)
            ids += await store.add(conn, Keys.user_positions(n), reason="trade")
    return ids


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)


async def relay_once(backend: Backend, redis_url: str, keys: StreamKeys) -> None:
    proc = await asyncio.create_subprocess_exec(
        *relay_args(backend, redis_url, keys), "--once", stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await kill(proc)
    assert proc.returncode == 0, stderr.decode()


async def test_a_relay_killed_between_publish_and_mark_loses_nothing_and_adds_no_new_id(
    backend: Backend, redis_url: str, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    ids = await add_changes(backend, 0, 250)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.outbox._relay_proc", backend.url, redis_url,
        stream_keys.prefix, backend.table, "relay-1",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"PUBLISHED 100"), line
    finally:
        await kill(proc)
    assert len(stream_event_ids(redis_client, stream_keys)) == 100  # in the stream, not marked
    async with backend.store() as store:
        assert await store.backlog() == 250
    await relay_once(backend, redis_url, stream_keys)  # the same relay name, restarted
    counts = Counter(stream_event_ids(redis_client, stream_keys))
    assert set(counts) == set(ids)  # 0 lost, and no event id the outbox does not hold
    assert Counter(counts.values()) == Counter({1: 150, 2: 100})  # the killed batch, twice
    assert {event_id for event_id, n in counts.items() if n == 2} == set(ids[:100])
    async with backend.store() as store:
        assert await store.backlog() == 0


async def test_a_relay_killed_at_random_while_the_service_writes_loses_nothing(
    backend: Backend, redis_url: str, redis_client: redis.Redis, stream_keys: StreamKeys
) -> None:
    rng = random.Random(4)
    ids: list[str] = []
    for round_ in range(3):
        proc = await asyncio.create_subprocess_exec(
            *relay_args(backend, redis_url, stream_keys),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 1.5 + rng.random()
            n = 0
            while time.monotonic() < deadline:  # the service keeps committing meanwhile
                ids += await add_changes(backend, 1000 * round_ + n, 20)
                n += 20
                await asyncio.sleep(0.01)
        finally:
            await kill(proc)
    ids += await add_changes(backend, 9000, 20)  # written while no relay ran
    await relay_once(backend, redis_url, stream_keys)
    counts = Counter(stream_event_ids(redis_client, stream_keys))
    assert set(counts) == set(ids)
    async with backend.store() as store:
        assert await store.backlog() == 0
