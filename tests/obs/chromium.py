"""Headless Chromium for page tests: Debian's ``chromium``, one process group per call.

``.ci/run`` installs it where it is missing; without it a test fails under ``CI=true`` and is
skipped elsewhere (with how to install it), like every other external binary of the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness.plugin import IN_CI

__all__ = ["chromium", "run_chromium"]


def chromium() -> str:
    """The browser's path; fails (CI) or skips (elsewhere) when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no chromium: apt-get install -y chromium (.ci/run does)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def run_chromium(url: str, *args: str, profile: Path, timeout: float = 90.0) -> str:
    """Run ``chromium --headless ARGS URL``; its stdout. The whole process group is ended by
    its id when it does not finish in time."""
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        *args, url,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"chromium did not finish within {timeout:.0f}s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):  # its helpers, if any outlived it
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"chromium exited {process.returncode}: {err[-2000:]}"
    return out
