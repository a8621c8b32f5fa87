"""A tiny run of ``cachebus bench fill``: it runs and reports every method (not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_fill_compares_guarded_fills_with_cache_aside() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cachebus"), "bench", "fill", "--fills", "50",
         "--repeats", "1", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["benchmark"] == "fill"
    assert report["cache_aside_us"] > 0 and report["ours_us"] > 0
    assert report["cached_us"] > 0 and report["hit_us"] > 0 and report["typed_hit_us"] > 0
    # 50 fills by get_or_set and 50 through @cached (other ids), the warm-up; hits store nothing
    assert report["stored"] == 101 and report["refused"] == 0
