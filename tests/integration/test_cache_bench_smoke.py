"""Tiny runs of ``cachebus bench scan`` and ``bench codec``: they run and report what they must.

These check the benchmarks' plumbing and output, not speed: the figures come from full runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cachebus.testing.server import find_redis_server

pytestmark = pytest.mark.slow


def _bench(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.skipif(find_redis_server() is None, reason="needs a redis-server binary")
def test_bench_scan_removes_the_namespace_three_ways_and_reports_the_targets() -> None:
    report = _bench("scan", "--keys", "20000", "--match", "2000", "--flushes", "11")
    for method in ("keys_del", "scan_unlink", "generation"):
        row = report[method]
        assert isinstance(row, dict) and row["removed"] == 2000, method
        assert row["longest_cmd_ms"] is not None
    assert report["keys_del"]["longest_cmd"] == "keys"  # type: ignore[index]
    assert isinstance(report["stall_ratio"], float) and isinstance(
        report["generation_flush_ms"], float
    )


def test_bench_codec_compares_the_codecs_on_every_size() -> None:
    report = _bench("codec", "--values", "3", "--train", "150", "--repeats", "1")
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) == {
        f"{k}_{s}" for k in ("market", "position") for s in ("1k", "10k", "100k")
    }
    for key in ("ratio_10k", "compress_us_10k", "dict_ratio_1k"):
        assert isinstance(report[key], float), key
