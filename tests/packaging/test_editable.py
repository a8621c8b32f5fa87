"""The editable install (``make test``'s) exposes ``cachebus`` alone, where mypy can see it.

It is a ``.pth`` naming ``.editable/``, whose one entry links to ``cachebus/``: run from a
directory that is not the checkout, ``cachebus.contracts`` imports and a top-level
``contracts`` does not.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # mypy of a small app: about 10 s


def test_the_editable_install_imports_cachebus_and_leaks_no_top_level_name(
    tmp_path: Path,
) -> None:
    pth = [f for f in metadata.files("cachebus") or [] if f.name.endswith(".pth")]
    assert [f.read_text().strip() for f in pth] == [str(ROOT / ".editable")]
    assert sorted(p.name for p in (ROOT / ".editable").iterdir()) == ["cachebus"]
    code = (
        "import importlib.util, cachebus.contracts, cachebus.core\n"
        "print([n for n in ('contracts', 'producers', 'consumers', 'cachecore') "
        "if importlib.util.find_spec(n) is not None])\n"
        "print(cachebus.contracts.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    leaked, where = done.stdout.splitlines()
    assert leaked == "[]"
    assert Path(where).resolve() == ROOT / "contracts" / "__init__.py"


def test_mypy_sees_the_editable_package_from_outside_the_checkout(tmp_path: Path) -> None:
    # An import hook would hide it ("Cannot find implementation or library stub").
    (tmp_path / "app.py").write_text(
        "from cachebus import Cache, Producer\n"
        "from cachebus.contracts.errors import CachebusError, ConfigError\n"
        "reveal_type(Producer)\n"
        "error: CachebusError = ConfigError('x')\n"
        "from cachebus import Cahce\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout
    assert 'Revealed type is "def' in out and "cachebus.producers.producer.Producer" in out, out
    assert 'Module "cachebus" has no attribute "Cahce"' in out, out
    assert "Cannot find implementation" not in out and out.count("error:") == 1, out
