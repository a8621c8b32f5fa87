"""A refused connection appended nothing: the publish error says so (``ambiguous`` false)."""

from __future__ import annotations

import threading
import time

import pytest

from cachebus.contracts import StreamKeys
from cachebus.contracts.errors import PublishError
from cachebus.producers import Producer, SyncProducer
from cachebus.producers._core import connect_refused
from cachebus.testing import FaultProxy, RedisServer
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


def test_a_refusal_after_an_attempt_that_may_have_sent_stays_ambiguous(
    redis_server: RedisServer,
) -> None:
    # Given a producer whose XADD reached the server (it ran: the reply is held by the proxy)
    keys = StreamKeys("mid")
    proxy = FaultProxy(redis_server.host, redis_server.port, resp=True).start()
    try:
        fault = proxy.on_command("XADD", "hold")
        errors: list[PublishError] = []

        def publish() -> None:
            with SyncProducer.from_url(
                proxy.url_for(redis_server.url), producer_name="api", keys=keys,
                registry=REGISTRY, socket_timeout=5.0, socket_connect_timeout=1.0,
            ) as producer:  # fmt: skip
                try:
                    producer.flush_namespace("prices")
                except PublishError as exc:
                    errors.append(exc)

        thread = threading.Thread(target=publish)
        thread.start()
        assert fault.fired.wait(10)
    finally:
        # When the server's side vanishes: the connection drops, the retry is refused
        proxy.close()
    thread.join(30)
    assert not thread.is_alive()
    # Then the producer does not claim nothing was appended: the entry is there
    (error,) = errors
    assert redis_server.client().xlen(keys.stream("inval")) == 1
    assert connect_refused(error) is False
    assert error.ambiguous is True
