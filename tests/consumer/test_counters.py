"""The counters of a member live in Redis, written with its acks: a SIGKILL does not erase them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.consumers.counters import Tally, parse_counters
from cachebus.consumers.plan import Delivered
from cachebus.contracts.keys import StreamKeys
from cachebus.testing import RedisServer, eventually
from tests.consumer.helpers import keys_event, publish
from tests.obs.cli_helpers import cli_json

pytestmark = pytest.mark.fault
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "count"
KEYS = StreamKeys(PREFIX)


def _start_member(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.consumer._consumer_proc", url, PREFIX],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def test_counters_survive_a_sigkilled_member(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
    stream = KEYS.stream("inval")
    proc = _start_member(redis_server.url, tmp_path / "consumer.stderr")
    try:
        await eventually(
            lambda: client.exists(f"{PREFIX}:applied:flushes"), within=60, what="the group"
        )
        await publish(client, KEYS, [keys_event("prices", str(i)) for i in range(300)])

        async def all_acked() -> bool:
            applied = await client.llen(f"{PREFIX}:applied")
            return applied == 300 and (await client.xpending(stream, "bot"))["pending"] == 0

        await eventually(all_acked, within=30, what="every event applied and acked")
        before = parse_counters(await client.hgetall(KEYS.counters("inval", "bot")))
        # The hazard: the member is killed, no graceful stop, nothing flushed on exit.
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        kept = parse_counters(await client.hgetall(KEYS.counters("inval", "bot")))
        assert kept == before
        assert kept.members["bot-1"] == {"applied": 300, "flushes.new_group": 1}
        # ...and `cachebus status` shows them after the process is gone.
        code, doc = await asyncio.to_thread(
            cli_json, "status", "--redis-url", redis_server.url, "--prefix", PREFIX
        )
        assert code == 0
        (group,) = doc["streams"][0]["groups"]
        assert group["counters"]["totals"]["applied"] == 300
        assert group["counters"]["members"]["bot-1"]["flushes.new_group"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await client.aclose()


def test_duplicates_are_redeliveries_and_repeats_within_the_window() -> None:
    from cachebus.contracts.events import KeysInvalidated

    def delivered(event_id: str, deliveries: int) -> Delivered:
        event = KeysInvalidated(namespace="p", keys=("1",), producer="t", event_id=event_id)
        return Delivered("1-0", event, {}, deliveries, {})

    tally = Tally(window=2)
    tally.add_applied([delivered("a", 1), delivered("b", 2)])  # b: delivered before
    tally.add_applied([delivered("a", 1)])  # a again, within the window: a producer retry
    tally.add_applied([delivered("c", 1), delivered("d", 1), delivered("c", 1)])  # c repeated
    tally.add_applied([delivered("a", 1)])  # a forgotten: two ids entered the window since
    assert tally.take("m1") == [("applied:m1", 7), ("duplicates:m1", 3)]
    assert tally.take("m1") == []  # counted once: the next ack starts from zero


def test_a_read_of_new_entries_is_counted_as_the_general_path_counts_it() -> None:
    from cachebus.contracts.events import KeysInvalidated

    def delivered(event_id: str) -> Delivered:
        event = KeysInvalidated(namespace="p", keys=("1",), producer="t", event_id=event_id)
        return Delivered("1-0", event, {}, 1, {})

    batches = [["a", "b", "a"], ["c", "b"], ["d", "e", "f", "g"], ["a", "c", "g"], ["h"] * 3]
    general, fresh = Tally(window=3), Tally(window=3)
    for ids in batches:
        general.add_applied([delivered(i) for i in ids])
        fresh.add_applied([delivered(i) for i in ids], redelivered=False)
        assert general.take("m") == fresh.take("m")
