"""The command line on a Redis Cluster: ``cachebus publish`` and ``consume`` with partitions."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.testing.cluster import RedisClusterHarness
from cachebus.testing.server import free_port
from tests.consumer.test_consume_cli import probe
from tests.harness.registry import REGISTRY, REGISTRY_FILE

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cachebus.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_the_sidecar_consumes_every_partition_of_a_cluster_stream(
    redis_cluster: RedisClusterHarness, prefix: str
) -> None:
    # Given a sidecar consuming 3 partitions on the cluster, into the cluster cache
    port = free_port()
    common = ["--prefix", prefix, "--partitions", "3", "--cluster"]
    sidecar = cli(
        "consume", "--registry", str(REGISTRY_FILE), "--service", "bot", "--namespaces", "prices",
        "--redis-url", redis_cluster.url, "--health-port", str(port), "--consumer", "bot-1",
        *common,
    )  # fmt: skip
    client = redis_cluster.async_client()
    try:
        deadline = time.monotonic() + 20
        while probe(port, "/readyz") != 200:
            assert time.monotonic() < deadline, "the sidecar never became ready"
            await asyncio.sleep(0.1)
        cache = Cache(client, KeySpace(prefix, "bot", registry=REGISTRY))
        ids = [f"m{i}" for i in range(12)]
        await cache.set_many("prices", dict.fromkeys(ids, 1))
        # When ids spread over the partitions are invalidated from the command line
        published = cli(
            "publish", "prices", *(a for i in ids for a in ("--key", i)), "--reason", "ops",
            "--redis-url", redis_cluster.url, "--registry", str(REGISTRY_FILE), *common,
        )  # fmt: skip
        out, err = published.communicate(timeout=30)
        assert published.returncode == 0, err.decode()
        # Then the event was split over the partitions, and the sidecar applied every piece
        assert "," in out.decode()
        lengths = [
            await client.xlen(p.stream("inval")) for p in StreamKeys(prefix, 3).all_partitions()
        ]
        assert sum(lengths) >= 2
        while await cache.get_many("prices", ids):
            assert time.monotonic() < deadline + 10, "the sidecar did not invalidate"
            await asyncio.sleep(0.1)
    finally:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.communicate(timeout=20)
        await client.aclose()
    assert sidecar.returncode == 0


def test_bench_cluster_reports_both_partition_counts_and_the_scale_ratio() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", "cluster", "--events", "600",
         "--repeats", "1", "--json"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("publish_eps_n1", "publish_eps_n3", "consume_eps_n1", "consume_eps_n3"):
        assert report[name] > 0, name
    assert report["scale_ratio"] > 0 and report["primaries"] == 3
