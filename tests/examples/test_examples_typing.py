"""The examples type-check under ``mypy --strict`` (``make typecheck``), and nothing they get
from cachebus is Any.

``--disallow-any-expr`` flags every expression typed Any; in the examples the only ones
allowed are those of third parties, each listed below with why. A cachebus read, decorator or
dependency that handed out Any would add a line that is not listed, and fail this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

#: (file, text on the flagged line, why its Any is not ours)
THIRD_PARTY_ANY = [
    (
        "examples/shop/store.py",
        "",
        "sqlite3 and aiosqlite rows are Any (store.py uses no cachebus)",
    ),
    ("examples/shop/api.py", "@app.", "FastAPI's route decorators are typed with an Any bound"),
]


def _mypy(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *flags, "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_any_reaches_the_examples_from_cachebus() -> None:
    done = _mypy("--disallow-any-expr")
    flagged = re.findall(r"^(examples/[^:]+):(\d+): error: (.*)$", done.stdout, re.M)
    assert flagged, "mypy flagged nothing: the check itself is not running"
    ours = []
    for path, line, message in flagged:
        text = (ROOT / path).read_text().splitlines()[int(line) - 1]
        if not any(path == p and marker in text for p, marker, _ in THIRD_PARTY_ANY):
            ours.append(f"{path}:{line}: {text.strip()}  ({message})")
    assert not ours, "Any from cachebus:\n" + "\n".join(ours)
