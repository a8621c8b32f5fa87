"""A tiny run of ``cachebus bench cdc``: it runs and reports every figure (not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_bench_cdc_reports_latency_beside_the_outbox_and_throughput_beside_the_floor(
    logical_postgres: object,  # the binaries are there (or CI fails)
) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", "cdc", "--rate", "200",
         "--seconds", "1", "--changes", "3000", "--json"],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["lost"] == {"cdc": 0, "outbox": 0}
    for key in ("commit_p50_ms", "commit_p99_ms", "outbox_p99_ms"):
        assert 0 < report[key] < 30_000, key
    assert report["commit_p50_ms"] <= report["commit_p99_ms"]
    assert report["changes"] == 3000
    for key in ("changes_per_s", "floor_changes_per_s", "sql_changes_per_s"):
        assert report[key] > 0, key
    ratio = report["changes_per_s"] / report["floor_changes_per_s"]
    assert report["floor_ratio"] == pytest.approx(ratio, abs=0.001)
