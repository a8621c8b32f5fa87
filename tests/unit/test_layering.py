"""Nothing in the library imports upward, and nothing anywhere imports the old top-level names.

The layers, lowest first: ``cachebus._lazy`` (stdlib only) ← ``cachebus.contracts`` ←
``cachebus.core`` ← ``cachebus.producers`` | ``cachebus.consumers`` (not each other) ← the rest
of ``cachebus`` (CLI, ops, demo, bench, testing, and the flat API of ``cachebus/__init__``).
Every import counts, those inside functions and under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER_OF = {"_lazy": 0, "contracts": 1, "core": 2, "producers": 3, "consumers": 3}
TOP = 4
OLD_ROOTS = {"contracts", "cachecore", "producers", "consumers"}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER_OF.get(parts[1], TOP) if len(parts) > 1 else TOP


def _library() -> dict[str, Path]:
    """Every module of the package by its dotted name, walking the links as Python does."""
    modules: dict[str, Path] = {}
    for root, dirs, files in os.walk(ROOT / "cachebus", followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        package = Path(root).relative_to(ROOT).parts
        for name in files:
            if name.endswith(".py"):
                stem = name[:-3]
                dotted = ".".join(package if stem == "__init__" else (*package, stem))
                modules[dotted] = Path(root) / name
    return modules


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, name] if name else base)
            found.append((node.lineno, name))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _allowed(importer: str, imported: str) -> bool:
    mine = _layer(importer)
    if mine == TOP or _package(importer) == _package(imported):
        return True
    return _layer(imported) < mine


def test_the_walk_sees_every_layer() -> None:
    modules = _library()
    for package in ("cachebus.contracts.errors", "cachebus.core.cache", "cachebus.cli"):
        assert package in modules
    assert "cachebus.producers.outbox.relay" in modules
    assert "cachebus.consumers.runtime" in modules
    assert len(modules) > 100


def test_no_module_imports_upward() -> None:
    upward = []
    for module, path in sorted(_library().items()):
        for line, imported in _imports(path, module):
            if imported.split(".")[0] != "cachebus":
                continue
            if not _allowed(module, imported):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {imported}")
    assert upward == []


def test_the_rule_catches_upward_imports() -> None:
    # The checker itself, on the imports it must refuse and those it must let through.
    assert not _allowed("cachebus.contracts.keys", "cachebus.core.cache")
    assert not _allowed("cachebus.producers._tracing", "cachebus")
    assert not _allowed("cachebus.producers.producer", "cachebus.consumers.runtime")
    assert not _allowed("cachebus.consumers.runtime", "cachebus.producers")
    assert not _allowed("cachebus.core.cache", "cachebus.testing.server")
    assert not _allowed("cachebus._lazy", "cachebus.contracts")
    assert _allowed("cachebus.core.cache", "cachebus.contracts.errors")
    assert _allowed("cachebus.consumers.sinks", "cachebus.core")
    assert _allowed("cachebus.contracts.events", "cachebus.contracts.keys")
    assert _allowed("cachebus.contracts", "cachebus._lazy")
    assert _allowed("cachebus.cli", "cachebus.consumers.runtime")


def _python_files() -> list[Path]:
    skip = {".git", ".venv", "__pycache__", "build", "dist", ".run", ".demo", ".bench"}
    files = []
    for root, dirs, names in os.walk(ROOT):  # the real folders, not the links into cachebus/
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".venv")]
        files += [Path(root) / n for n in names if n.endswith(".py")]
    return files


def test_nothing_imports_the_old_top_level_names() -> None:
    # A second copy of a module under another name would split its classes in two.
    found = []
    for path in _python_files():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, imported in _imports(path, module):
            if imported.split(".")[0] in OLD_ROOTS:
                found.append(f"{path.relative_to(ROOT)}:{line}: {imported}")
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", readme, re.S):
        for match in re.finditer(r"^\s*(?:from|import) (\w+)", block, re.M):
            if match.group(1) in OLD_ROOTS:
                found.append(f"README.md: {match.group(0).strip()}")
    assert found == []
