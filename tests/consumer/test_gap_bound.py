"""Lean reads at the tail keep guarantee 2: a loss is flushed within the written bound
(``block_ms`` + one batch, see cachebus.consumers.runtime), once, even when the group read
past it before the next check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig, ConsumerObserver
from cachebus.consumers.config import FlushReason
from cachebus.consumers.entries import GroupState, StreamState
from cachebus.consumers.gaps import caught_up, check_after, combine
from cachebus.consumers.group import GroupMeta
from cachebus.consumers.observe import ReadSource
from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from cachebus.testing import RedisServer, eventually
from tests.consumer.helpers import NS, Recorder, keys_event

KEYS = StreamKeys("cb")
STREAM = KEYS.stream("inval")
BLOCK_MS = 400
#: The written bound is block_ms + one batch + one read; the slack absorbs a loaded machine.
BOUND_S = BLOCK_MS / 1000 + 1.6
META = GroupMeta(epoch="e", synced="e", deficit=0, fallback_mark=None)


# ---- the verdicts, from states as Redis 7.0 reports them ----------------------------------
def state(*, added: int, length: int, read: int | None, delivered: str = "9-0",
          last: str = "9-0", max_deleted: str = "0-0") -> StreamState:  # fmt: skip
    group = GroupState("g", 1, 0, delivered, read, None)
    return StreamState(length, added, last, max_deleted, "1-0", {"g": group})


def test_a_caught_up_group_counts_every_entry_it_skipped_exactly() -> None:
    # 20 added, 5 left, the group read 15 and is at the tail: 5 were skipped. The view before
    # a read (removed - read = 15 - 15) sees nothing: the hole this closes.
    verdict = check_after(state(added=20, length=5, read=15), "g", META, since=None)
    assert verdict.gap and verdict.deficit == 5
    assert caught_up(state(added=20, length=5, read=15), "g")
    # The same loss, once flushed, is not flushed again.
    flushed = GroupMeta(epoch="e", synced="e", deficit=5, fallback_mark=None)
    assert not check_after(state(added=30, length=15, read=25), "g", flushed, None).gap


def test_behind_the_tail_only_the_lower_bound_counts_and_nothing_is_invented() -> None:
    behind = state(added=20, length=5, read=15, delivered="8-0")
    assert not caught_up(behind, "g")
    assert not check_after(behind, "g", META, since=None).gap  # removed 15 - read 15
    assert check_after(state(added=20, length=2, read=15, delivered="8-0"), "g", META, None).gap


def test_a_reestimated_count_lowers_the_baseline_without_a_flush() -> None:
    old = GroupMeta(epoch="e", synced="e", deficit=7, fallback_mark=None)
    verdict = check_after(state(added=20, length=5, read=20), "g", old, since=None)
    assert not verdict.gap and verdict.deficit == 0
    assert combine(verdict, verdict).deficit == 0


def test_an_entry_deleted_past_the_last_checked_position_is_a_gap_once() -> None:
    deleted = state(added=12, length=11, read=None, delivered="9-0", max_deleted="7-0")
    verdict = check_after(deleted, "g", META, since="6-0")
    assert verdict.gap and verdict.fallback_mark == "deleted:7-0"
    marked = GroupMeta(epoch="e", synced="e", deficit=0, fallback_mark="deleted:7-0")
    assert not check_after(deleted, "g", marked, since="6-0").gap
    # Deleted at or before where the group was at the last check: it had been delivered.
    assert not check_after(deleted, "g", META, since="7-0").gap


# ---- against a real Redis ------------------------------------------------------------------
class Reads(ConsumerObserver):
    """Counts lean reads (no state) and checking reads."""

    def __init__(self) -> None:
        self.lean = 0
        self.checked = 0

    def on_read(self, source: ReadSource, count: int, state: StreamState | None) -> None:
        if state is None:
            self.lean += 1
        else:
            self.checked += 1


def fields(i: int | str) -> dict[bytes | str, bytes | str]:
    return encode_event(keys_event("prices", str(i)))  # type: ignore[return-value]


async def _traffic(client: redis.asyncio.Redis, stop: asyncio.Event) -> None:
    """About 100 events/s, bounded to 30 s: keeps the member reading at the tail."""
    for i in range(3000):
        if stop.is_set():
            return
        await client.xadd(STREAM, fields(f"t{i}"))
        await asyncio.sleep(0.01)


class Running:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.rec = Recorder()
        self.reads = Reads()
        config = ConsumerConfig(
            stream="inval", group="svc", consumer="c1", namespaces=NS, block_ms=BLOCK_MS,
            min_idle_ms=5000, claim_interval_s=1.0, housekeeping_interval_s=5.0,
            backoff_base_s=0.02, backoff_cap_s=0.2,
        )  # fmt: skip
        self.consumer = Consumer(client, config, [self.rec.sink()], keys=KEYS, observer=self.reads)

    def diagnose(self) -> str:
        stats = self.consumer.stats.as_dict()
        return f"flushes {self.rec.flushes}, reads {vars(self.reads)}, stats {stats}"


@pytest.fixture
async def running(redis_server: RedisServer) -> AsyncIterator[tuple[Running, redis.asyncio.Redis]]:
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5, retry=None)
    run = Running(client)
    task = asyncio.ensure_future(run.consumer.run())
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(_traffic(client, stop))
    try:
        await eventually(
            lambda: run.reads.lean >= 20 and len(run.rec.applied) >= 20,
            within=15,
            what="the member reading lean at the tail",
            diagnose=run.diagnose,
        )
        yield run, client
    finally:
        stop.set()
        await traffic
        await run.consumer.stop()
        await task
        await client.aclose()


async def _flushed_within_bound(run: Running, what: str) -> None:
    await eventually(
        lambda: run.rec.reasons()[FlushReason.TRIMMED] == 1,
        within=BOUND_S,
        what=what,
        diagnose=run.diagnose,
    )
    # Two more check deadlines: the same loss is never flushed twice.
    checked = run.reads.checked
    await eventually(
        lambda: run.reads.checked >= checked + 2, within=5, what="two more checks",
        diagnose=run.diagnose,
    )  # fmt: skip
    assert run.rec.reasons() == {FlushReason.NEW_GROUP: 1, FlushReason.TRIMMED: 1}


async def test_lean_reads_at_the_tail_flush_nothing_without_a_loss(
    running: tuple[Running, redis.asyncio.Redis],
) -> None:
    run, _ = running
    checked, lean = run.reads.checked, run.reads.lean
    await eventually(
        lambda: run.reads.checked >= checked + 3, within=10, what="three checks under traffic",
        diagnose=run.diagnose,
    )  # fmt: skip
    assert run.reads.lean > lean  # the hot path stayed lean between the checks
    assert run.rec.reasons() == {FlushReason.NEW_GROUP: 1}


async def test_a_trim_leaving_more_than_it_removed_while_blocked_is_flushed_within_the_bound(
    running: tuple[Running, redis.asyncio.Redis],
) -> None:
    run, client = running
    # Given entries added and trimmed in one transaction: the blocked member wakes to the 5
    # left and reads past the 5 lost; the stream keeps at least as many as it lost.
    pipe = client.pipeline(transaction=True)
    for i in range(10):
        pipe.xadd(STREAM, fields(f"burst{i}"))
    pipe.xtrim(STREAM, maxlen=5, approximate=False)
    await pipe.execute()
    await _flushed_within_bound(run, "the trimmed entries flushed")


async def test_an_unread_entry_deleted_while_blocked_is_flushed_within_the_bound(
    running: tuple[Running, redis.asyncio.Redis],
) -> None:
    run, client = running
    # Given an entry added and deleted in one transaction, with one after it: the blocked
    # member wakes past the deleted one, which no read ever delivered.
    ms = int(time.time() * 1000) + 1000  # ahead of every id the traffic has used
    pipe = client.pipeline(transaction=True)
    pipe.xadd(STREAM, fields("gone"), id=f"{ms}-0")
    pipe.xadd(STREAM, fields("after"), id=f"{ms}-1")
    pipe.xdel(STREAM, f"{ms}-0")
    await pipe.execute()
    await _flushed_within_bound(run, "the deleted entry flushed")


async def test_an_entry_deleted_after_it_was_read_is_no_gap(
    running: tuple[Running, redis.asyncio.Redis],
) -> None:
    run, client = running
    entry = await client.xadd(STREAM, fields("read-then-deleted"))
    event_seen = lambda: any(eid == entry.decode() for eid in run.rec.entry_ids)  # noqa: E731
    await eventually(event_seen, within=5, what="the entry applied", diagnose=run.diagnose)
    checked = run.reads.checked
    await eventually(
        lambda: run.reads.checked >= checked + 2, within=5, what="checks after the read",
        diagnose=run.diagnose,
    )  # fmt: skip
    await client.xdel(STREAM, entry)
    checked = run.reads.checked
    await eventually(
        lambda: run.reads.checked >= checked + 3, within=10, what="checks after the XDEL",
        diagnose=run.diagnose,
    )  # fmt: skip
    assert run.rec.reasons() == {FlushReason.NEW_GROUP: 1}
