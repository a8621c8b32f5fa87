"""A tiny run of ``cachebus bench startup``: it runs and reports every measure (not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_startup_reports_help_version_consume_ready_and_python() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", "startup", "--runs", "1",
         "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "startup"
    for key in ("help_s", "version_s", "consume_ready_s", "python_s"):
        assert 0 < report[key] < 60, key
    # Each measure includes starting an interpreter: none can beat `python -c pass`.
    assert min(report["help_s"], report["consume_ready_s"]) > report["python_s"]
    assert report["runs"] == 1 and set(report["budgets"]) == {
        "help_s",
        "version_s",
        "consume_ready_s",
    }
    assert "cachebus consume (ready)" in done.stderr
