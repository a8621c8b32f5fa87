"""A SIGKILLed member's entries are applied by a live one within ``min_idle`` plus one second.

The claim interval is derived from ``min_idle_ms`` (here 1000 ms: 0.5 s), and a read never
blocks past the next claim round, so the bound holds with the defaults of every other setting
(before, the claim ran every 5 s whatever ``min_idle``: about 6 s here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.consumers import CallbackSink
from cachebus.consumers.plan import Delivered
from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from cachebus.service import ConsumerService
from cachebus.testing import RedisServer, eventually
from tests.consumer.helpers import keys_event
from tests.harness.registry import REGISTRY

pytestmark = pytest.mark.fault
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "claim"
KEYS = StreamKeys(PREFIX)
STREAM = KEYS.stream("inval")
MIN_IDLE_S = 1.0
EVENTS = 20


def _start_stuck_member(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.consumer._stuck_member", url, PREFIX],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def test_a_sigkilled_members_entries_are_applied_within_min_idle_plus_a_second(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
    applied_at: dict[str, float] = {}

    async def on_event(item: Delivered) -> None:
        applied_at.setdefault(item.event.event_id, time.time())

    # A live member of the group (all defaults but min_idle), running all along.
    live = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="svc", namespaces=["prices"],
        sinks=[CallbackSink(on_event)],
        settings={"prefix": PREFIX, "consumer": "live", "min_idle_ms": int(MIN_IDLE_S * 1000),
                  "traces": False, "metrics": False},
    )  # fmt: skip
    assert live.config.claim_interval_s == 0.5  # derived: min(0.5, min_idle / 2)
    dead = _start_stuck_member(redis_server.url, tmp_path / "stuck.stderr")
    try:
        # The member to be killed joins first and takes the first events; the live member then
        # runs all along (the dead one's heartbeats keep its entries from being claimed).
        await eventually(lambda: _member_pending(client, "dead", 0), within=30, what="dead to join")
        events = [keys_event("prices", f"p{i}") for i in range(EVENTS)]
        async with client.pipeline(transaction=True) as pipe:  # one read takes them all
            for event in events:
                pipe.xadd(STREAM, encode_event(event))  # type: ignore[arg-type]
            await pipe.execute()
        await eventually(
            lambda: client.exists(f"{PREFIX}:stuck"), within=30,
            what="the stuck member to hold a batch",
        )  # fmt: skip
        async with live:
            assert await live.wait_ready(30)
            held = await _pending_of(client, "dead")
            assert len(held) == EVENTS, "hazard: the member to be killed holds every entry"
            # SIGKILL it; the hazard: it really held its entries, pending, when it died.
            os.kill(dead.pid, signal.SIGKILL)
            assert dead.wait(timeout=10) == -signal.SIGKILL
            rows = await client.xpending_range(STREAM, "svc", "-", "+", 1000, consumername="dead")
            assert {r["message_id"].decode() for r in rows} == set(held)
            # Each entry's idle time runs from its last delivery or heartbeat.
            now = time.time()
            last_touched = max(now - r["time_since_delivered"] / 1000.0 for r in rows)
            ids = {e.event_id for e in events}
            await eventually(lambda: ids <= set(applied_at), within=10, what="every event applied")
            entry_of = dict(zip(await _entry_ids(client), events, strict=True))
            taken_by_live = [applied_at[entry_of[entry_id].event_id] for entry_id in held]
            delay = max(taken_by_live) - last_touched
            assert delay + 0.05 >= MIN_IDLE_S and delay <= MIN_IDLE_S + 1.0, delay
            # The counters (in Redis) say who did what: the live member claimed them, and
            # they were duplicates (delivered before, to the dead member).
            counters = await client.hgetall(KEYS.counters("inval", "svc"))
            assert int(counters[b"claimed:live"]) == len(held)
            assert int(counters[b"duplicates:live"]) == len(held)
            assert int(counters[b"applied:live"]) == EVENTS
            assert b"applied:dead" not in counters  # it never acked anything
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait()
        await client.aclose()


async def _pending_of(client: redis.asyncio.Redis, member: str) -> list[str]:
    rows = await client.xpending_range(STREAM, "svc", "-", "+", 1000, consumername=member)
    return [r["message_id"].decode() for r in rows]


async def _member_pending(client: redis.asyncio.Redis, member: str, count: int) -> bool:
    if not await client.exists(STREAM):
        return False
    members = {m["name"].decode(): m for m in await client.xinfo_consumers(STREAM, "svc")}
    return member in members and int(members[member]["pending"]) == count


async def _entry_ids(client: redis.asyncio.Redis) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await client.xrange(STREAM)]
