"""TLS: ``rediss://`` from producer to stream to consumer to cache, certificates made here."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.consumers.config import FlushReason
from cachebus.contracts.errors import BackendUnavailable
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache
from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.producers import Producer, SyncProducer
from cachebus.testing import RedisServer, make_certificates
from cachebus.testing.server import TLSFiles
from tests.harness.registry import REGISTRY
from tests.security.conftest import Deployment, start_deployment


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_deployment(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path, certificates: TLSFiles
) -> Iterator[Deployment]:
    dep = start_deployment(redis_server_factory, tmp_path, tls=certificates)
    yield dep
    dep.close()


async def test_rediss_carries_invalidations_from_producer_to_consumer_to_cache(
    tls_deployment: Deployment,
) -> None:
    dep = tls_deployment
    assert dep.url("bot").startswith("rediss://")
    settings = dep.settings("bot")
    pool = create_async_pool(settings)  # the hiredis-packing SSL connection class
    client = redis.asyncio.Redis(connection_pool=pool)
    cache = Cache(client, KeySpace(dep.layout.prefix, "bot", registry=REGISTRY))
    consumer = dep.consumer(client, "bot", cache=cache)
    await consumer.run(until_idle=True)
    await cache.set_many("positions", {"1:all": 1, "2:all": 2, "3:all": 3})
    async with Producer.from_url(
        dep.url("producer"), producer_name="api", registry=REGISTRY
    ) as producer:
        await producer.invalidate_keys("positions", ["1:all"])
    with SyncProducer.from_url(
        dep.url("producer"), producer_name="worker", registry=REGISTRY
    ) as sync_producer:
        sync_producer.invalidate_keys("positions", ["2:all"])
    await consumer.run(until_idle=True)
    assert await cache.get_many("positions", ["1:all", "2:all", "3:all"]) == {"3:all": 3}
    assert consumer.stats.acked == 2
    assert dict(consumer.stats.flushes) == {FlushReason.NEW_GROUP.value: 1}
    # The server has no plaintext port at all: this really went over TLS.
    config = dep.client("admin").config_get("*port")
    assert config["port"] == "0" and config["tls-port"] == str(dep.server.port)
    await client.aclose()
    await pool.aclose()


async def test_a_client_that_cannot_verify_the_server_gets_a_typed_error_without_secret(
    tls_deployment: Deployment,
) -> None:
    dep = tls_deployment
    password = dep.passwords[dep.user("bot")]
    no_ca = dep.url("bot").split("?", 1)[0] + "?ssl_cert_reqs=required"
    plaintext = dep.url("bot").replace("rediss://", "redis://", 1).split("?", 1)[0]
    for url in (no_ca, plaintext):
        cache = Cache.from_url(
            url,
            KeySpace("cb", "bot", registry=REGISTRY),
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retries=0,
        )
        with pytest.raises(BackendUnavailable) as caught:
            await cache.invalidate_keys("positions", ["1:all"])
        await cache.aclose()
        text = "".join(traceback.format_exception(caught.value))
        assert password not in text
        assert repr(RedisSettings.from_url(url)).count(password) == 0
