"""A refused connection appended nothing: the publish error says so (``ambiguous`` false)."""

from __future__ import annotations

import time

import pytest

from cachebus.contracts import StreamKeys
from cachebus.contracts.errors import PublishError
from cachebus.producers import Producer, SyncProducer
from cachebus.testing.server import free_port
from tests.harness.registry import REGISTRY

FAST = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3, "pool_timeout": 0.3}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_sync_producer_reports_a_refused_connect_as_not_appended(host: str) -> None:
    url = f"redis://{host}:{free_port()}/0"  # nobody listens: every connect is refused
    with (
        SyncProducer.from_url(
            url, producer_name="api", keys=StreamKeys("refused"), registry=REGISTRY, **FAST
        ) as producer,
        pytest.raises(PublishError) as caught,
    ):
        producer.flush_namespace("prices")
    assert caught.value.ambiguous is False
    assert "were not appended" in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_async_producer_reports_a_refused_connect_as_not_appended(host: str) -> None:
    url = f"redis://{host}:{free_port()}/0"
    producer = Producer.from_url(
        url, producer_name="api", keys=StreamKeys("refused"), registry=REGISTRY, **FAST
    )
    started = time.monotonic()
    try:
        with pytest.raises(PublishError) as caught:
            await producer.flush_namespace("prices")
    finally:
        await producer.aclose()
    assert caught.value.ambiguous is False
    assert time.monotonic() - started <= producer.publish_timeout + 1.0
