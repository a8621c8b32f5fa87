"""The FastAPI wiring is an extra: the package and the runtime import without it, and the
integration says which extra is missing in one line."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_FASTAPI = "import sys; sys.modules['fastapi'] = None; "


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_FASTAPI + code], capture_output=True, text=True, timeout=60
    )


def test_the_package_and_the_runtime_import_without_fastapi() -> None:
    done = _python(
        "import cachebus, cachebus.integrations.runtime, cachebus.core.cached; "
        "print(cachebus.Cache.cached.__name__)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cached"


def test_the_fastapi_integration_names_its_extra() -> None:
    done = _python("import cachebus.integrations.fastapi")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: cachebus.integrations.fastapi needs the fastapi extra: "
        "pip install 'cachebus[fastapi]'"
    )
