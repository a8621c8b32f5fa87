"""The public API: one curated ``cachebus.__all__`` (the README's table), lazy and typed.

Each package lists its names three times: imports under ``TYPE_CHECKING`` (what mypy and IDEs
see), ``__all__`` (the documented surface) and the lazy map (what runs). These tests hold the
three together and prove the laziness keeps ``import cachebus`` cheap.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import cachebus

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "cachebus",
    "cachebus.contracts",
    "cachebus.core",
    "cachebus.producers",
    "cachebus.producers.outbox",
    "cachebus.consumers",
    "cachebus.testing",
]


def _readme_api() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Public API\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return [name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[2])]


def test_all_is_the_documented_list() -> None:
    documented = _readme_api()
    assert len(documented) == len(set(documented)), "a name is listed twice in the README"
    assert sorted(documented) == sorted(cachebus.__all__)
    assert len(cachebus.__all__) <= 40, "the flat API is what a service needs, not every helper"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # resolves every lazy name
    assert set(namespace) - {"__builtins__"} == set(module.__all__)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        module.Missing  # noqa: B018


def _lists(package: str) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """(typed name -> module, __all__, lazy name -> module), read from the package's source."""
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    typed: dict[str, str] = {}
    public: list[str] = []
    lazy: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    for alias in imp.names:
                        assert alias.asname == alias.name, "re-export as the same name"
                        typed[alias.name] = imp.module or ""
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            public = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "not TYPE_CHECKING":
            call = next(n for n in ast.walk(node) if isinstance(n, ast.Call))
            mapping = ast.literal_eval(call.args[1])
            lazy = {name: mod for mod, names in mapping.items() for name in names}
    return typed, public, lazy


@pytest.mark.parametrize("package", PACKAGES)
def test_typed_public_and_lazy_lists_agree(package: str) -> None:
    typed, public, lazy = _lists(package)
    assert public, f"{package} has no literal __all__"
    assert sorted(typed) == sorted(public), "TYPE_CHECKING imports differ from __all__"
    assert typed == lazy, "TYPE_CHECKING imports and the lazy map name different modules"
    for name, module in lazy.items():
        assert getattr(importlib.import_module(module), name) is getattr(
            importlib.import_module(package), name
        )


def test_import_is_cheap() -> None:
    # A fresh interpreter: importing the package and reading __all__ loads no dependency.
    code = (
        "import sys, cachebus, cachebus.contracts, cachebus.core, cachebus.producers, "
        "cachebus.consumers; cachebus.__all__; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'redis', 'pydantic', 'opentelemetry', 'typer', 'rich', 'orjson', 'zstandard'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version_comes_from_the_metadata() -> None:
    assert cachebus.__version__ == metadata.version("cachebus")
    assert "version = " in (ROOT / "pyproject.toml").read_text()
    written = [
        path
        for path in (ROOT / "cachebus").rglob("*.py")
        if re.search(r"__version__\s*=\s*['\"]", path.read_text())
    ]
    assert written == []
