"""``cachebus consume`` as a sidecar process: probes, graceful SIGTERM, forced second signal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis.asyncio

from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.testing import RedisServer
from cachebus.testing.server import free_port
from tests.consumer.helpers import keys_event, publish
from tests.harness.registry import REGISTRY, REGISTRY_FILE

pytestmark = pytest.mark.fault
ROOT = Path(__file__).resolve().parents[2]


def start(url: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cachebus.cli",
            "consume",
            "--service",
            "bot",
            "--namespaces",
            "prices,market",
            "--redis-url",
            url,
            "--health-port",
            str(port),
            "--consumer",
            "bot-1",
            "--registry",
            str(REGISTRY_FILE),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def wait_for(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_the_sidecar_applies_invalidations_and_stops_gracefully(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    proc = start(redis_server.url, port)
    try:
        await wait_for(lambda: probe(port, "/readyz") == 200)
        assert probe(port, "/healthz") == 200
        client = redis.asyncio.Redis.from_url(redis_server.url)
        cache = Cache(client, KeySpace(prefix="cb", scope="bot", registry=REGISTRY))
        await cache.set("prices", "p1", {"v": 1})
        await publish(client, StreamKeys("cb"), [keys_event("prices", "p1")])

        async def gone() -> bool:
            return await cache.get("prices", "p1") is None

        deadline = time.monotonic() + 10
        while not await gone():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # Readiness follows Redis; liveness does not.
        redis_server.pause()
        await wait_for(lambda: probe(port, "/readyz") == 503)
        assert probe(port, "/healthz") == 200
        redis_server.resume()
        await wait_for(lambda: probe(port, "/readyz") == 200)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        pending = await client.xpending(StreamKeys("cb").stream("inval"), "bot")
        assert pending["pending"] == 0
        await client.aclose()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_second_signal_forces_the_exit(redis_server: RedisServer) -> None:
    port = free_port()
    proc = start(redis_server.url, port)
    try:
        await wait_for(lambda: probe(port, "/readyz") == 200)
        redis_server.pause()  # the graceful stop now has to wait for a stuck read
        await asyncio.sleep(0.3)
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 130
    finally:
        redis_server.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_service_is_a_clear_configuration_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cachebus.cli", "consume", "--namespaces", "prices"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        env={**os.environ, "CACHEBUS_SERVICE": ""},
    )
    assert result.returncode == 2
    assert b"no service" in result.stderr
