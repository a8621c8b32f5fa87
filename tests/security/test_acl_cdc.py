"""The cdc user: the relay's events and positions in one MULTI/EXEC, and nothing else."""

from __future__ import annotations

import redis

from cachebus.producers.cdc.changes import Transaction
from cachebus.producers.cdc.publish import CdcPublisher
from tests.harness.registry import REGISTRY
from tests.security.conftest import Deployment, refused


def test_the_cdc_user_publishes_a_transaction_and_its_position(deployment: Deployment) -> None:
    client = redis.Redis.from_url(deployment.url("cdc"), socket_timeout=5)
    try:
        publisher = CdcPublisher(
            client, stream=deployment.layout.stream, keys=deployment.keys, registry=REGISTRY,
            slot="cachebus", system_id="7000000000000000001",
        )  # fmt: skip
        assert publisher.position() is None
        txn = Transaction(commit_lsn=0x1000, end_lsn=0x1010, commit_ms=1_700_000_000_000)
        txn.keys["positions"] = {"42:all": None}
        txn.flushes["market"] = "TRUNCATE public.markets"
        assert publisher.publish([txn], 0x1010) == 2
        position = publisher.position()
        assert position is not None and position.lsn == 0x1010
        assert publisher.publish_gap(["positions"], "slot lost", 0x2000) == 1
    finally:
        client.close()
    admin = deployment.client("admin")
    assert admin.xlen(deployment.stream_key) == 3


def test_the_cdc_user_is_refused_everything_else(deployment: Deployment) -> None:
    cdc = deployment.client("cdc")
    keys = deployment.keys
    stream = deployment.stream_key
    refused(lambda: cdc.unlink(stream))
    refused(lambda: cdc.xtrim(stream, maxlen=0))
    refused(lambda: cdc.xrange(stream))
    refused(lambda: cdc.xadd(keys.stream("other"), {"a": "b"}))
    refused(lambda: cdc.get("cb:bot:positions:1:all"))
    refused(lambda: cdc.hset(keys.group_meta("inval", "bot"), "synced", "x"))
    refused(lambda: cdc.delete(keys.cdc_position("inval", "cachebus")))
    refused(lambda: cdc.hset(keys.cdc_position("other", "cachebus"), "lsn", "1"))
    refused(lambda: cdc.execute_command("KEYS", "*"))
