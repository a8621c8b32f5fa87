"""Registry drift: two producers build one namespace's ids from different templates.

The audit's "key patterns drift apart", made visible: every event carries its producer's
fingerprint of its namespace; a consumer whose own definition differs counts it, exports it,
logs it once per producer and fingerprint (naming what differs), and still applies the
event; ``cachebus status`` shows which service runs which registry.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio

from cachebus.consumers import CallbackSink
from cachebus.consumers.plan import Delivered
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.producers import Producer
from cachebus.service import ConsumerService
from cachebus.testing import RedisServer, eventually
from tests.harness.registry import REGISTRY, REGISTRY_FILE
from tests.obs.cli_helpers import cli_json
from tests.obs.otel_helpers import Telemetry

pytestmark = pytest.mark.fault
PREFIX = "drift"
KEYS = StreamKeys(PREFIX)
# The legacy API still runs last month's file: positions keyed by {uid}, not {user_id}.
LEGACY = Registry.from_toml(
    REGISTRY_FILE.read_text().replace('key = "{user_id}:{view}"', 'key = "{uid}:{view}"'),
    source="legacy/cachebus.toml",
)


async def test_two_producers_with_different_templates_are_reported_and_nothing_is_lost(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert LEGACY["positions"].fingerprint != REGISTRY["positions"].fingerprint
    assert LEGACY["prices"].fingerprint == REGISTRY["prices"].fingerprint
    applied: list[str] = []

    async def on_event(item: Delivered) -> None:
        applied.append(item.event.event_id)

    telemetry = Telemetry()
    bot = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="bot", sinks=[CallbackSink(on_event)],
        meter_provider=telemetry.meter_provider,
        settings={"prefix": PREFIX, "consumer": "bot-1", "traces": False},
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="cachebus.consumer")
    async with bot:
        assert await bot.wait_ready(30)
        async with (
            Producer.from_url(redis_server.url, producer_name="api", keys=KEYS,
                              registry=REGISTRY) as api,
            Producer.from_url(redis_server.url, producer_name="legacy-api", keys=KEYS,
                              registry=LEGACY) as legacy,
        ):  # fmt: skip
            sent = [await api.invalidate_keys("positions", [f"{i}:all"]) for i in range(5)]
            sent += [await legacy.invalidate_keys("positions", [f"{i}:all"]) for i in range(5)]
            sent += [await legacy.invalidate_keys("prices", [f"m{i}"]) for i in range(3)]
        # Nothing is lost: every event is applied, drifted or not.
        await eventually(lambda: len(applied) == len(sent), within=10, what="all applied")
        assert bot.stats.drifted == 5  # the legacy positions events only
        assert telemetry.value(
            "cachebus.consumer.drift", cachebus__namespace="positions",
            cachebus__producer="legacy-api",
        ) == 5  # fmt: skip
        # Logged once for the producer and fingerprint, naming both and what differs.
        drift = [r.getMessage() for r in caplog.records if "registry drift" in r.getMessage()]
        assert len(drift) == 1
        (message,) = drift
        for part in (
            "producer legacy-api",
            "namespace positions",
            LEGACY["positions"].fingerprint,
            REGISTRY["positions"].fingerprint,
            "key '{uid}:{view}' (ours '{user_id}:{view}')",
        ):
            assert part in message, message
        # `cachebus status` shows who runs which registry, and where they differ.
        code, doc = await asyncio.to_thread(
            cli_json, "status", "--redis-url", redis_server.url, "--prefix", PREFIX,
            "--registry", str(REGISTRY_FILE),
        )  # fmt: skip
    telemetry.close()
    assert code == 0
    registry = doc["streams"][0]["registry"]
    who = {(p["role"], p["name"]): p for p in registry["participants"]}
    assert who["producer", "api"]["fingerprint"] == REGISTRY.fingerprint
    assert who["producer", "legacy-api"]["fingerprint"] == LEGACY.fingerprint
    assert who["member", "bot/bot-1"]["fingerprint"] == REGISTRY.fingerprint
    positions = registry["drift"]["positions"]
    assert positions[LEGACY["positions"].fingerprint] == ["producer legacy-api"]
    assert set(positions[REGISTRY["positions"].fingerprint]) == {
        "producer api", "member bot/bot-1", "file",
    }  # fmt: skip
    assert "prices" not in registry["drift"]


async def test_events_without_a_fingerprint_are_not_judged(redis_server: RedisServer) -> None:
    from tests.consumer.helpers import keys_event, publish

    bot = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="bot", namespaces=["prices"],
        settings={"prefix": PREFIX, "consumer": "bot-1", "traces": False, "metrics": False},
    )  # fmt: skip
    async with bot:
        assert await bot.wait_ready(30)
        client = redis.asyncio.Redis.from_url(redis_server.url)
        await publish(client, KEYS, [keys_event("prices", "m1")])  # another producer: no header
        await eventually(lambda: bot.stats.applied == 1, within=10, what="applied")
        await client.aclose()
    assert bot.stats.drifted == 0
