"""Passwords never appear in logs, reprs, exception texts or CLI output (all grepped here)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio

from cachebus.consumers import RedisCacheSink
from cachebus.contracts.errors import CachebusError
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, SyncCache
from cachebus.core.connection import RedisSettings, create_async_pool, create_sync_pool
from cachebus.producers import Producer, SyncProducer
from cachebus.settings import CachebusSettings
from cachebus.testing.server import free_port
from tests.harness.registry import REGISTRY, REGISTRY_FILE
from tests.security.conftest import Deployment

ROOT = Path(__file__).resolve().parents[2]
WRONG = "wrong-Pw-4d1f9c0e7b"


def _texts_of(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _secrets(deployment: Deployment) -> list[str]:
    found = [*deployment.passwords.values(), WRONG]
    return [*found, *(quote(s, safe="") for s in found)]


def _assert_clean(texts: list[str], deployment: Deployment) -> None:
    blob = "\n".join(texts)
    assert blob.strip(), "nothing was captured: the check would be vacuous"
    leaked = [s for s in _secrets(deployment) if s in blob]
    assert not leaked, f"{len(leaked)} password(s) leaked"


async def test_no_password_in_reprs_logs_or_exceptions_of_the_library(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    texts: list[str] = []
    bot_url = deployment.url("bot")
    unreachable = bot_url.replace(f":{deployment.server.port}/", f":{free_port()}/")
    settings = RedisSettings.from_url(bot_url, socket_timeout=1.0, retries=0)
    cli_settings = CachebusSettings(redis_url=bot_url, cache_url=bot_url)  # type: ignore[arg-type]
    texts += [repr(settings), str(settings), repr(cli_settings), str(cli_settings)]
    texts += [cli_settings.model_dump_json(), str(cli_settings.model_dump())]
    # Working objects, used once so their connections exist when we print them.
    pool = create_async_pool(settings)
    client = redis.asyncio.Redis(connection_pool=pool)
    cache = Cache(client, KeySpace("cb", "bot", registry=REGISTRY))
    consumer = deployment.consumer(client, "bot", cache=cache)
    await consumer.run(until_idle=True)
    producer = Producer.from_url(deployment.url("producer"), producer_name="api", registry=REGISTRY)
    await producer.invalidate_keys("positions", ["1:all"])
    await consumer.run(until_idle=True)
    sync_pool = create_sync_pool(settings)
    sync_cache = SyncCache(
        redis.Redis(connection_pool=sync_pool), KeySpace("cb", "bot", registry=REGISTRY)
    )
    sync_cache.set("positions", "2:all", 2)
    sync_producer = SyncProducer.from_url(
        deployment.url("producer"), producer_name="api", registry=REGISTRY
    )
    sync_producer.invalidate_keys("positions", ["2:all"])
    conn = await pool.get_connection()
    texts += [repr(o) for o in (pool, client, conn, cache, consumer, consumer.config)]
    texts += [repr(o) for o in (RedisCacheSink(cache), producer, sync_producer, sync_pool)]
    texts += [repr(sync_cache), str(pool), str(client), str(conn.__dict__.get("kwargs", ""))]
    await pool.release(conn)
    # Failures: a wrong password, a missing right, an unreachable server.
    failures: list[BaseException] = []
    for url in (deployment.url("bot", password=WRONG), unreachable):
        bad = Cache.from_url(
            url, KeySpace("cb", "bot", registry=REGISTRY), socket_timeout=1.0, retries=0
        )
        with pytest.raises(CachebusError) as caught:
            await bad.invalidate_keys("positions", ["1:all"])
        failures.append(caught.value)
        texts.append(repr(bad))
        await bad.aclose()
        bad_producer = Producer.from_url(
            url, producer_name="api", socket_timeout=1.0, retries=0, registry=REGISTRY
        )
        with pytest.raises(CachebusError) as caught:
            await bad_producer.invalidate_keys("positions", ["1:all"])
        failures.append(caught.value)
        await bad_producer.aclose()
    with pytest.raises(CachebusError) as caught:  # NOPERM: the bot on the api's scope
        await Cache(client, KeySpace("cb", "api", registry=REGISTRY)).invalidate_keys(
            "positions", ["1:all"]
        )
    failures.append(caught.value)
    wrong_client = redis.asyncio.Redis.from_url(deployment.url("bot", password=WRONG))
    with pytest.raises(CachebusError) as caught:
        await deployment.consumer(wrong_client, "bot").run(until_idle=True)
    failures.append(caught.value)
    await wrong_client.aclose()
    for exc in failures:
        texts += _texts_of(exc)
    texts += [record.getMessage() for record in caught_records(caplog)]
    texts.append(caplog.text)
    assert len(failures) == 6
    _assert_clean(texts, deployment)
    await producer.aclose()
    sync_producer.close()
    sync_pool.disconnect()
    await client.aclose()
    await pool.aclose()


def caught_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    records = list(caplog.records)
    assert records, "DEBUG logging captured nothing"
    return records


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachebus.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_no_password_in_the_output_of_cachebus_publish(deployment: Deployment) -> None:
    outputs: list[str] = []
    unreachable = deployment.url("producer").replace(
        f":{deployment.server.port}/", f":{free_port()}/"
    )
    cases = [
        (deployment.url("producer"), 0),
        (deployment.url("producer", password=WRONG), 1),  # authentication fails
        (deployment.url("ops"), 1),  # NOPERM
        (unreachable, 1),
        (deployment.url("producer") + "&bad", 2),  # a malformed URL
    ]
    for url, code in cases:
        args = ["publish", "positions", "--key", "1:all", "--reason", "t", "--timeout", "0.5",
                "--registry", str(REGISTRY_FILE)]  # fmt: skip
        done = _cli(*args, "--redis-url", url)
        assert done.returncode == code, done.stderr
        outputs += [done.stdout, done.stderr]
    via_env = _cli("publish", "market", "--flush", "--yes", "--reason", "t", "--json",
                   env={"CACHEBUS_REDIS_URL": deployment.url("producer"),
                        "CACHEBUS_REGISTRY": str(REGISTRY_FILE)})  # fmt: skip
    assert via_env.returncode == 0, via_env.stderr
    _assert_clean([*outputs, via_env.stdout, via_env.stderr], deployment)


def test_no_password_in_the_output_of_cachebus_consume_at_debug(deployment: Deployment) -> None:
    outputs: list[str] = []
    base = [
        "consume",
        "--registry",
        str(REGISTRY_FILE),
        "--service",
        "bot",
        "--namespaces",
        "positions",
        "--log-level",
        "DEBUG",
    ]
    # A wrong password: the sidecar exits at once, as a configuration error (2), with an error
    # that names no secret.
    wrong = _cli(*base, "--redis-url", deployment.url("bot", password=WRONG))
    assert wrong.returncode == 2 and "authentication" in wrong.stderr
    outputs += [wrong.stdout, wrong.stderr]
    # A working sidecar, configured through the environment, logs at DEBUG until SIGTERM.
    proc = subprocess.Popen(
        [sys.executable, "-m", "cachebus.cli", *base, "--consumer", "bot-1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CACHEBUS_REDIS_URL": deployment.url("bot")},
    )
    try:
        admin = deployment.client("admin")
        deadline = time.monotonic() + 30
        while not admin.exists(deployment.keys.group_meta("inval", "bot")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sidecar never created its group"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "consuming inval as bot/bot-1" in err
    outputs += [out, err]
    _assert_clean(outputs, deployment)
