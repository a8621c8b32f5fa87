"""What a consumer reports is what happened: the cache named when it is the cache that is
down (in readiness and at stop), an outage's end logged with its length, the routine first
flush of a new group at INFO, half an envelope dead-lettered as what it is."""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable

import orjson
import pytest
import redis.asyncio

from cachebus.consumers import Consumer, ConsumerConfig
from cachebus.contracts.codec import FIELD
from cachebus.contracts.keys import StreamKeys
from cachebus.service import ConsumerService
from cachebus.testing import RedisServer, eventually
from cachebus.testing.server import free_port
from tests.consumer.helpers import NS, Recorder
from tests.harness.registry import REGISTRY

pytestmark = pytest.mark.fault  # private redis-servers, stopped and started per test

PREFIX = "truth"
FAST: dict[str, object] = {
    "prefix": PREFIX, "block_ms": 100, "traces": False, "metrics": False,
    "backoff_base_s": 0.02, "backoff_cap_s": 0.2, "socket_timeout": 1.0, "connect_timeout": 0.5,
    "grace_period_s": 0.5, "hard_deadline_s": 2.0,
}  # fmt: skip


def _readyz(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
            return dict(orjson.loads(reply.read()))
    except urllib.error.HTTPError as exc:  # 503: not ready, the body says why
        return dict(orjson.loads(exc.read()))


def _messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


async def test_with_the_cache_redis_down_readiness_and_the_stop_blame_the_cache(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cachebus")
    # Given a service whose cache lives on its own Redis, which is down from the start
    stream, cache = redis_server_factory(), redis_server_factory()
    cache.stop()
    port = free_port()
    service = ConsumerService.from_url(
        stream.url, registry=REGISTRY, service="bot", cache_url=cache.url,
        settings={**FAST, "health_port": port},
    )  # fmt: skip
    await service.start()
    try:
        # When the probe asks (the new group's first flush cannot reach the cache)
        def cache_blamed() -> bool:
            return any("cache unreachable" in r for r in service.health().reasons)

        await eventually(cache_blamed, within=20, what="readiness names the cache")
        body = await asyncio.to_thread(_readyz, port)
    finally:
        await service.stop()
    # Then /readyz says the cache is unreachable, and names it, not its consequences
    assert body["ready"] is False
    reasons = [str(r) for r in body["reasons"]]  # type: ignore[attr-defined]
    assert len(reasons) == 1 and reasons[0].startswith("cache unreachable for "), reasons
    assert f"127.0.0.1:{cache.port}" in reasons[0]
    assert not any("group not present" in r or "pending" in r for r in reasons)
    # And stopping says the cache was unreachable; the stream's Redis is never blamed
    messages = _messages(caplog)
    assert any("stopped while the cache was unreachable" in m for m in messages), messages
    assert not any("stream Redis" in m for m in messages), messages


async def test_an_outage_of_the_stream_redis_is_logged_with_its_length_when_it_ends(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cachebus")
    server = redis_server_factory()
    service = ConsumerService.from_url(
        server.url, registry=REGISTRY, service="bot", settings=dict(FAST)
    )
    async with service:
        assert await service.wait_ready(30)
        # The first start's flush of the new group is routine: INFO, not WARNING
        flushes = [r for r in caplog.records if r.getMessage().startswith("flushed ")]
        assert [(r.levelno, "new_group" in r.getMessage()) for r in flushes] == [
            (logging.INFO, True)
        ]
        # When the stream's Redis is down for a while, then back
        server.stop()
        await eventually(
            lambda: not service.health().connected, within=20, what="the outage noticed"
        )
        server.start()
        await eventually(lambda: service.health().ready, within=30, what="ready again")
    # Then its end is logged, with the outage's length
    ends = [m for m in _messages(caplog) if "reachable again" in m]
    assert len(ends) == 1, ends
    found = re.fullmatch(r"stream Redis reachable again after a (\d+\.\d)s outage", ends[0])
    assert found is not None and float(found.group(1)) > 0


async def test_an_envelope_without_headers_is_dead_lettered_as_not_ours(
    redis_server: RedisServer,
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    keys = StreamKeys(PREFIX)
    config = ConsumerConfig(
        stream="inval", group="bot", consumer="bot-1", namespaces=NS, block_ms=100
    )
    consumer = Consumer(client, config, [Recorder().sink()], keys=keys)
    await consumer.run(until_idle=True)  # creates the group
    half = orjson.dumps({"data": '{"kind": "flush", "namespace": "prices"}'})
    await client.xadd(keys.stream("inval"), {FIELD: half})
    await consumer.run(until_idle=True)
    ((_, fields),) = await client.xrange(keys.dead_letter("inval", "bot"))
    error = fields[b"dlq_error"].decode()
    await client.aclose()
    assert "not a cachebus envelope" in error and "schema_version" not in error


async def test_the_cache_coming_back_is_logged_with_the_outage_length(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cachebus")
    stream, cache = redis_server_factory(), redis_server_factory()
    cache.stop()
    service = ConsumerService.from_url(
        stream.url, registry=REGISTRY, service="bot", cache_url=cache.url, settings=dict(FAST)
    )
    async with service:
        await eventually(
            lambda: any("cache unreachable" in r for r in service.health().reasons),
            within=20, what="the cache outage noticed",
        )  # fmt: skip
        cache.start()
        assert await service.wait_ready(30)
    ends = [m for m in _messages(caplog) if "reachable again" in m]
    assert len(ends) == 1, ends
    found = re.fullmatch(r"cache reachable again after a (\d+\.\d)s outage", ends[0])
    assert found is not None and float(found.group(1)) > 0
