"""Tiny runs of ``cachebus bench e2e``, ``bench consume`` and ``bench fanout``: they run and
report the fields the hot-path targets are read from. Plumbing, not speed: figures come from
full runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _bench(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_bench_e2e_reports_our_and_the_raw_stream_percentiles_and_nothing_lost() -> None:
    report = _bench("e2e", "--rate", "200", "--seconds", "1")
    for field in ("p50_ms", "p99_ms", "p999_ms", "raw_p50_ms", "raw_p99_ms"):
        value = report[field]
        assert isinstance(value, float) and value > 0, field
    assert report["p50_ms"] <= report["p99_ms"] <= report["p999_ms"]  # type: ignore[operator]
    assert report["lost"] == 0
    assert report["lost_by_mode"] == {"cachebus": 0, "raw-stream": 0, "pubsub": 0}


def test_bench_consume_reports_the_raw_batch_floor_and_faststream_ratios() -> None:
    report = _bench("consume", "--events", "3000", "--repeats", "1")
    for field in (
        "raw_batch_ratio",
        "faststream_ratio",
        "raw_ratio",
        "validating_floor_ratio",
        "validating_over_raw_batch",
    ):
        value = report[field]
        assert isinstance(value, float) and value > 0, field
    assert isinstance(report["raw_batch_eps"], int) and report["raw_batch_eps"] > 0
    assert isinstance(report["raw_validating_eps"], int) and report["raw_validating_eps"] > 0


def test_bench_fanout_measures_both_consumers_at_each_group_count() -> None:
    report = _bench("fanout", "--groups", "1,3", "--rate", "20", "--seconds", "1")
    assert report["groups"] == [1, 3]
    assert report["lost"] == {"cachebus": {"1": 0, "3": 0}, "raw": {"1": 0, "3": 0}}
    cpu = report["cpu_us_per_event"]
    assert isinstance(cpu, dict) and set(cpu) == {"cachebus", "raw"}
    for mode in ("cachebus", "raw"):
        assert set(cpu[mode]) == {"1", "3"}
    # The 50-group fields are null unless 50 groups were run.
    assert report["cpu_ratio_50"] is None and report["scale_50_over_1"] is None
