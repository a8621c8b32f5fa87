"""The commit-log relay under faults: SIGKILLed at random points, PostgreSQL restarted, its
slot invalidated, a second relay on the same slot. Nothing committed is ever lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import psycopg2
import pytest
import redis

from cachebus.contracts.keys import StreamKeys
from cachebus.producers.cdc.database import slot_info
from cachebus.testing import eventually
from cachebus.testing.postgres import PostgresServer
from tests.cdc.helpers import (
    MAPPED_NAMESPACES,
    TABLES,
    drop_slot,
    events,
    execute,
    invalidated,
    make_relay,
    new_database,
    running,
    streaming,
)
from tests.harness.registry import REGISTRY_FILE

pytestmark = [pytest.mark.fault, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("cachebus"))


class Writer:
    """Commits ``INSERT INTO positions`` one row per transaction (user ids 0, 1, ...) from a
    thread, riding out a database restart; ``committed`` counts what PostgreSQL confirmed."""

    def __init__(self, dsn: str, pause_s: float = 0.004) -> None:
        self.dsn = dsn
        self.pause_s = pause_s
        self.committed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn, connect_timeout=2)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO positions (user_id, qty) VALUES (%s, 1)", (self.committed,)
                    )
                self.committed += 1
            except psycopg2.Error:
                # a commit whose answer was lost may have happened: the check below then
                # just expects fewer ids than were written, never more
                conn = None
                self._stop.wait(0.1)
                continue
            self._stop.wait(self.pause_s)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def expected(count: int) -> set[tuple[str, str]]:
    return {("positions", f"{i}:all") for i in range(count)}


def duplicates(client: redis.Redis, keys: StreamKeys) -> int:
    counts = Counter(e.event_id for e in events(client, keys))
    return sum(n - 1 for n in counts.values())


# ---- SIGKILL at random points -------------------------------------------------------------
def _cli(dsn: str, redis_url: str, keys: StreamKeys, registry: Path, slot: str) -> list[str]:
    return [
        CLI, "cdc", "--database", dsn, "--redis-url", redis_url, "--prefix", keys.prefix,
        "--slot", slot, "--publication", "cb_pub", "--registry", str(registry), "--create",
        "--log-level", "WARNING",
    ]  # fmt: skip


def _slot_active(dsn: str, slot: str) -> bool:
    conn = psycopg2.connect(dsn)
    try:
        info = slot_info(conn.cursor(), slot)
    finally:
        conn.close()
    return info is not None and info.active_pid is not None


@pytest.mark.timeout(150)
async def test_a_relay_killed_twenty_times_loses_nothing(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys, tmp_path: Path
) -> None:
    dsn = new_database(logical_postgres)
    registry = tmp_path / "cachebus.toml"
    registry.write_text(REGISTRY_FILE.read_text() + TABLES)
    args = _cli(dsn, redis_url, stream_keys, registry, "killed")
    rng = random.Random(15)
    client = redis.Redis.from_url(redis_url, socket_timeout=5, retry=None)
    proc = await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)
    try:
        await eventually(lambda: _slot_active(dsn, "killed"), within=30, what="first relay")
        with Writer(dsn) as writer:
            for _ in range(20):
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                os.kill(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)
                proc = await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)
            await asyncio.sleep(0.5)
        want = expected(writer.committed)
        assert writer.committed > 500  # the kills landed among real traffic
        await eventually(
            lambda: want <= invalidated(client, stream_keys),
            within=60,
            what=f"all {writer.committed} committed rows invalidated",
            diagnose=lambda: f"missing {len(want - invalidated(client, stream_keys))}",
        )
        dups = duplicates(client, stream_keys)
        print(f"\n{writer.committed} transactions, 20 SIGKILLs, {dups} duplicate events")
        assert not [e for e in events(client, stream_keys) if e.kind == "flush"]
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
        client.close()


# ---- PostgreSQL restarted -------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("crash", [False, True], ids=["fast-shutdown", "crash"])
async def test_postgres_restarted_mid_stream_loses_nothing(
    postgres_server_factory: object, redis_url: str, stream_keys: StreamKeys, crash: bool
) -> None:
    server: PostgresServer = postgres_server_factory()  # type: ignore[operator]
    dsn = new_database(server)
    relay, client = make_relay(dsn, redis_url, stream_keys, backoff_cap_s=0.5)
    try:
        with running(relay):
            await streaming(relay)
            with Writer(dsn) as writer:
                await eventually(lambda: writer.committed > 200, within=30, what="writes")
                server.restart(crash=crash)
                await eventually(lambda: relay.stats.sessions >= 2, within=30, what="resumed")
                committed = writer.committed
                await eventually(lambda: writer.committed > committed + 200, within=30,
                                 what="writes after the restart")  # fmt: skip
            want = expected(writer.committed)
            await eventually(
                lambda: want <= invalidated(client, stream_keys),
                within=30,
                what="every committed row invalidated",
                diagnose=lambda: f"missing {len(want - invalidated(client, stream_keys))}",
            )
        assert relay.stats.gaps == 0
    finally:
        client.close()


# ---- the slot invalidated -------------------------------------------------------------------
@pytest.mark.timeout(120)
async def test_an_invalidated_slot_is_one_flush_per_namespace_and_the_relay_goes_on(
    postgres_server_factory: object, redis_url: str, stream_keys: StreamKeys
) -> None:
    server: PostgresServer = postgres_server_factory(  # type: ignore[operator]
        {"max_slot_wal_keep_size": "1MB"}, wal_segsize_mb=1
    )
    dsn = new_database(server)
    relay, client = make_relay(dsn, redis_url, stream_keys, slot="lost")
    try:
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) VALUES (1)")
            await eventually(lambda: relay.stats.transactions >= 1, within=20, what="relayed")
        # the relay is stopped while writes go on, past max_slot_wal_keep_size
        execute(dsn, "CREATE TABLE filler (id serial, pad text)")

        def lost() -> bool:
            execute(
                dsn,
                "INSERT INTO filler (pad) SELECT repeat('x', 500) FROM generate_series(1, 5000)",
            )
            execute(dsn, "SELECT pg_switch_wal()", "CHECKPOINT")
            conn = psycopg2.connect(dsn)
            try:
                info = slot_info(conn.cursor(), "lost")
            finally:
                conn.close()
            return info is not None and info.wal_status == "lost"

        await eventually(lost, within=60, what="PostgreSQL invalidated the slot", interval=0.2)
        execute(dsn, "INSERT INTO positions (user_id) VALUES (2)")  # lost with the slot
        relay, other = make_relay(dsn, redis_url, stream_keys, slot="lost")
        other.close()
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) VALUES (3)")
            await eventually(
                lambda: ("positions", "3:all") in invalidated(client, stream_keys),
                within=20,
                what="the relay goes on after the gap",
            )
        flushes = [e for e in events(client, stream_keys) if e.kind == "flush"]
        assert sorted(f.namespace for f in flushes) == MAPPED_NAMESPACES
        assert all("invalidated by PostgreSQL" in f.reason for f in flushes)
        assert relay.stats.gaps == 1
        record = client.hgetall(relay.publisher.key if relay.publisher else "")
        assert b"max_slot_wal_keep_size" in record[b"last_gap"]
        assert record[b"gaps"] == b"1"
    finally:
        client.close()


# ---- two relays, one slot -------------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_a_second_relay_on_the_slot_waits_and_takes_over(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    first, client = make_relay(dsn, redis_url, stream_keys, slot="shared")
    second, other = make_relay(dsn, redis_url, stream_keys, slot="shared")
    try:
        with running(first):
            await streaming(first)
            with running(second):
                await eventually(lambda: second.stats.standby, within=20, what="a standby")
                execute(dsn, "INSERT INTO positions (user_id) VALUES (1)")
                await eventually(lambda: first.stats.transactions == 1, within=20, what="one")
                assert not second.stats.streaming
                first.stop()  # the active relay goes away: the standby takes the slot
                await streaming(second)
                execute(dsn, "INSERT INTO positions (user_id) VALUES (2)")
                await eventually(
                    lambda: (
                        {("positions", "1:all"), ("positions", "2:all")}
                        <= invalidated(client, stream_keys)
                    ),
                    within=20,
                    what="the standby relays after the takeover",
                )
        assert (first.stats.transactions, second.stats.transactions) == (1, 1)
        assert first.stats.gaps == second.stats.gaps == 0
    finally:
        client.close()
        other.close()


# ---- the slot dropped (and maybe recreated) while the relay was stopped -------------------------
@pytest.mark.timeout(90)
@pytest.mark.parametrize("recreated", [False, True], ids=["dropped", "recreated"])
async def test_a_slot_dropped_behind_the_relays_back_is_a_flush_per_namespace(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys, recreated: bool
) -> None:
    dsn = new_database(logical_postgres)
    slot = "recreated" if recreated else "dropped"
    relay, client = make_relay(dsn, redis_url, stream_keys, slot=slot)
    try:
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) VALUES (1)")
            await eventually(lambda: relay.stats.transactions >= 1, within=20, what="relayed")
        await drop_slot(dsn, slot)
        execute(dsn, "INSERT INTO positions (user_id) VALUES (2)")  # no slot saw it
        if recreated:
            execute(dsn, f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
        # without --create: the slot existed, so the relay recreates it (after the flush)
        relay, other = make_relay(dsn, redis_url, stream_keys, slot=slot, create=False)
        other.close()
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) VALUES (3)")
            await eventually(
                lambda: ("positions", "3:all") in invalidated(client, stream_keys),
                within=20,
                what="the relay goes on after the gap",
            )
        flushes = [e for e in events(client, stream_keys) if e.kind == "flush"]
        assert sorted(f.namespace for f in flushes) == MAPPED_NAMESPACES
        assert all(("recreated?" if recreated else "was missing") in f.reason for f in flushes)
        assert ("positions", "2:all") not in invalidated(client, stream_keys)  # the flush did
        assert relay.stats.gaps == 1
    finally:
        client.close()


# ---- Redis away ------------------------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_changes_committed_while_redis_is_away_arrive_when_it_is_back(
    logical_postgres: PostgresServer, redis_server_factory: object, stream_keys: StreamKeys
) -> None:
    server = redis_server_factory()  # type: ignore[operator]
    dsn = new_database(logical_postgres)
    relay, client = make_relay(dsn, server.url, stream_keys, backoff_cap_s=0.5)
    try:
        with running(relay):
            await streaming(relay)
            execute(dsn, "INSERT INTO positions (user_id) VALUES (1)")
            await eventually(lambda: relay.stats.transactions == 1, within=20, what="relayed")
            server.kill()
            execute(dsn, "INSERT INTO positions (user_id) VALUES (2)")
            await eventually(lambda: relay.stats.errors >= 1, within=20, what="publish failed")
            server.start()  # empty: no persistence
            await eventually(
                lambda: ("positions", "2:all") in invalidated(client, stream_keys),
                within=30,
                what="the change committed while Redis was away",
                diagnose=lambda: repr(relay.stats),
            )
        assert relay.stats.gaps == 0  # the slot kept it: nothing to flush
    finally:
        client.close()


# ---- published, not confirmed -----------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_what_was_published_but_not_confirmed_comes_back_with_the_same_ids(
    logical_postgres: PostgresServer, redis_url: str, stream_keys: StreamKeys
) -> None:
    dsn = new_database(logical_postgres)
    # no feedback within the test: every transaction stays unconfirmed
    never = {"slot": "unconfirmed", "idle_confirm_s": 3600.0}
    relay, client = make_relay(dsn, redis_url, stream_keys, **never)
    try:
        with running(relay):
            await streaming(relay)
            for user in (1, 2, 3):
                execute(dsn, f"INSERT INTO positions (user_id) VALUES ({user})")
            await eventually(lambda: relay.stats.transactions == 3, within=20, what="relayed")
        first = [e.event_id for e in events(client, stream_keys)]
        assert len(first) == 3
        # the slot sends them again; the position recorded in Redis covers them: skipped
        again, other = make_relay(dsn, redis_url, stream_keys, **never)
        other.close()
        with running(again):
            await streaming(again)
            await eventually(lambda: again.stats.skipped == 3, within=20, what="skipped")
        assert [e.event_id for e in events(client, stream_keys)] == first
        # Redis lost the position (not the stream): the same events again, same ids
        assert again.publisher is not None
        client.delete(again.publisher.key)
        third, other = make_relay(dsn, redis_url, stream_keys, **never)
        other.close()
        with running(third):
            await streaming(third)
            await eventually(lambda: third.stats.transactions == 3, within=20, what="again")
        assert [e.event_id for e in events(client, stream_keys)] == first + first
        assert duplicates(client, stream_keys) == 3
    finally:
        client.close()
