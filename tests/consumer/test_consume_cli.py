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


def _consume(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cachebus.cli", "consume", *args],
        cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip


def test_a_namespace_missing_from_the_registry_exits_2_and_touches_nothing(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    stream = StreamKeys("cb").stream("inval")
    args = ("--registry", str(REGISTRY_FILE), "--redis-url", redis_server.url)
    # Without a stream: none is created.
    connections = int(client.info("stats")["total_connections_received"])
    refused = _consume(*args, "--service", "web", "--namespaces", "products")
    assert refused.returncode == 2
    (line,) = refused.stderr.decode().strip().splitlines()  # one line
    assert "'products' is not registered in" in line and str(REGISTRY_FILE) in line
    assert client.exists(stream) == 0 and client.dbsize() == 0
    # With a stream and another service's group: no new group, no new member.
    client.xgroup_create(stream, "bot", id="$", mkstream=True)
    groups_before = client.xinfo_groups(stream)
    refused = _consume(*args, "--service", "web", "--namespaces", "prices,products")
    assert refused.returncode == 2
    assert [g["name"] for g in client.xinfo_groups(stream)] == [b"bot"]
    assert client.xinfo_groups(stream) == groups_before
    assert client.xinfo_consumers(stream, "bot") == []
    assert client.dbsize() == 1
    # Not a single connection reached Redis: everything was checked before.
    assert int(client.info("stats")["total_connections_received"]) == connections
    client.close()


def test_a_bad_registry_file_exits_2_naming_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "cachebus.toml"
    bad.write_text('[namespaces.carts]\nkey = "{user_id"\nttl_s = 60\n')
    refused = _consume("--registry", str(bad), "--service", "web", "--redis-url", "redis://x:1")
    assert refused.returncode == 2
    assert f"{bad}:2: namespace 'carts'" in refused.stderr.decode()
    assert "(rule registry.template)" in refused.stderr.decode()
    inconsistent = _consume(
        "--registry", str(REGISTRY_FILE), "--service", "bot", "--min-idle-ms", "1000",
        "--claim-interval-s", "5", "--redis-url", "redis://x:1",
    )  # fmt: skip
    assert inconsistent.returncode == 2
    assert b"claim_interval_s (5.0) must not exceed min_idle_ms" in inconsistent.stderr
