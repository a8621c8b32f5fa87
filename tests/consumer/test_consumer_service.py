"""The composition root: one object runs a service's consumers, owns their clients, stops in
order, and serves the probes; the demo, the sidecar and the benchmarks run through it."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from cachebus.contracts.errors import AccessDenied, ConsumerError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings
from cachebus.testing import RedisServer, ServerOptions, eventually
from cachebus.testing.server import free_port
from tests.consumer.helpers import keys_event, publish
from tests.harness.registry import REGISTRY

PREFIX = "root"
FAST: dict[str, object] = {"prefix": PREFIX, "block_ms": 100, "traces": False, "metrics": False}


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return int(reply.status), reply.read()


def _gone(cache: Cache, namespace: str, ident: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await cache.get(namespace, ident) is None

    return check


async def test_the_root_applies_invalidations_and_closes_what_it_created(
    redis_server: RedisServer,
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    service = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="bot", settings=dict(FAST)
    )
    assert service.config.namespaces == {"positions", "prices"}  # the registry's readers
    assert service.health().reasons == ("not started",)
    async with service:
        assert await service.wait_ready(30)
        cache = Cache(client, KeySpace(PREFIX, "bot", registry=REGISTRY))
        await cache.set("prices", "m1", 1)
        await publish(client, StreamKeys(PREFIX), [keys_event("prices", "m1")])
        await eventually(_gone(cache, "prices", "m1"), within=10, what="m1 invalidated")
        with pytest.raises(ConsumerError, match="already started"):
            await service.start()
    await service.stop()  # idempotent
    assert service.stats.applied == 1
    # Its connections are closed: only ours is left.
    names = [c["name"] for c in await client.client_list()]
    assert service.config.consumer not in names
    await client.aclose()


async def test_the_probes_and_prometheus_metrics_are_served_on_the_port(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    settings = CachebusSettings(
        redis_url=redis_server.url,  # type: ignore[arg-type]
        service="bot", health_port=port, metrics_interval_s=0.1,
        **{**FAST, "metrics": True, "consumer": "bot-1"},  # type: ignore[arg-type]
    )  # fmt: skip
    service = ConsumerService(settings, registry=REGISTRY)
    async with service:
        assert service.health_port == port
        assert await service.wait_ready(30)
        status, body = await asyncio.to_thread(_get, port, "/readyz")
        assert status == 200 and b'"ready":true' in body
        client = redis.asyncio.Redis.from_url(redis_server.url)
        await publish(client, StreamKeys(PREFIX), [keys_event("prices", "m1")])
        await client.aclose()
        # The counters kept in Redis reach /metrics too (sampled every metrics_interval_s).
        labels = ('cachebus_counter="applied"', 'cachebus_member="bot-1"')

        async def sampled() -> bool:
            _, text = await asyncio.to_thread(_get, port, "/metrics")
            return any(
                all(label in line for label in labels) and line.endswith(" 1.0")
                for line in text.decode().splitlines()
                if line.startswith("cachebus_group_events_total")
            )

        await eventually(sampled, within=10, what="the applied counter on /metrics")
    with pytest.raises(OSError):
        await asyncio.to_thread(_get, port, "/healthz")  # stopped in order: the server too


async def test_a_refused_credential_ends_run_with_access_denied(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(ServerOptions(requirepass="secret"))
    url = server.url.replace("redis://", "redis://default:wrong@")
    service = ConsumerService.from_url(url, registry=REGISTRY, service="bot", settings=dict(FAST))
    with pytest.raises(AccessDenied):
        await asyncio.wait_for(service.run(), 30)
    await service.stop()  # already stopped by the failure: still fine
