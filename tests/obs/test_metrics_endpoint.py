"""``cachebus consume`` serves Prometheus ``/metrics`` beside its probes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import redis.asyncio

from cachebus.contracts.keys import StreamKeys
from cachebus.testing.server import free_port
from tests.consumer.helpers import flush_event, keys_event, publish
from tests.harness.registry import REGISTRY_FILE

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status), reply.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample ``name{...labels...}`` in Prometheus text."""
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_sidecar(url: str, prefix: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cachebus.cli", "consume", "--registry", str(REGISTRY_FILE),
         "--service", "bot", "--namespaces", "prices,market", "--redis-url", url,
         "--prefix", prefix,
         "--consumer", "bot-1", "--health-port", str(port), "--block-ms", "100",
         "--metrics-interval-s", "0.2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip


async def test_the_sidecar_exposes_consumer_and_cache_metrics_in_prometheus_format(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "sidecar.log").open("wb")
    proc = start_sidecar(redis_url, prefix, port, log)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 20
        while get(port, "/readyz")[0] != 200:
            assert proc.poll() is None, (tmp_path / "sidecar.log").read_text()
            assert time.monotonic() < deadline, "the sidecar never became ready"
            await asyncio.sleep(0.1)
        events = [keys_event("prices", "1"), keys_event("prices", "2"), flush_event("market")]
        await publish(client, StreamKeys(prefix), events)
        text = ""
        while (sample(text, "cachebus_consumer_applied_total") or 0) < 2:
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.2)
            status, text = get(port, "/metrics")
            assert status == 200
        stream = StreamKeys(prefix).stream("inval")
        labels = {"messaging_destination_name": stream, "messaging_consumer_group_name": "bot"}
        assert sample(text, "cachebus_consumer_applied_total", cachebus_namespace="prices",
                      **labels) == 2  # fmt: skip
        assert sample(text, "messaging_client_consumed_messages_total", **labels) == 3
        assert (
            sample(text, "cachebus_consumer_flushes_total", cachebus_flush_reason="new_group") == 1
        )
        assert sample(text, "cachebus_consumer_publish_to_apply_seconds_count") == 3
        assert sample(text, "cachebus_consumer_lag") == 0
        assert sample(text, "cachebus_consumer_oldest_pending_age_seconds") == 0
        assert sample(text, "cachebus_cache_memory_used_bytes") is not None
        assert sample(text, "cachebus_cache_health_level", cachebus_metric="memory") is not None
        assert sample(text, "cachebus_cache_health_threshold", cachebus_metric="hit_rate",
                      cachebus_level="alert") == 0.7  # fmt: skip
        assert 'service_instance_id="bot-1"' in text  # target_info names the member
        assert get(port, "/healthz")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
        await client.aclose()
    assert code == 0, (tmp_path / "sidecar.log").read_text()[-3000:]
