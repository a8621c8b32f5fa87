"""The library ships no domain: the demo's namespaces live in the demo's registry file only.

Every string literal of the library (outside ``cachebus/demo/``) is compared with the names of
the demo's namespaces; the few that are words of something else are listed with the reason.
"""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cachebus"
DEMO_NAMESPACES = frozenset(
    tomllib.loads((PACKAGE / "demo" / "registry.toml").read_text())["namespaces"]
)
#: (file, literal): why that literal is not a namespace.
NOT_NAMESPACES = {
    ("cachebus/acl.py", "user"): "the ACL file's own keyword (`user NAME on ...`)",
    ("cachebus/bench/_samples.py", "market"): "a kind of sample JSON (a public API's markets)",
    ("cachebus/bench/codec.py", "market"): "the same kind of sample JSON",
    ("cachebus/bench/fill.py", "user"): "a field of the sample value a fill stores",
    ("cachebus/bench/fill.py", "positions"): "a field of the sample value a fill stores",
    ("cachebus/bench/fill.py", "market"): "a field of the sample value a fill stores",
}
REMOVED = {"DEFAULT_REGISTRY", "TTLClass", "CacheKeys", "NamespaceRegistry", "DEFAULT_TTL_SECONDS"}


def _library_files() -> list[Path]:
    files = []
    for root, dirs, names in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "demo")]
        files += [Path(root) / n for n in names]
    return files


def test_the_demo_declares_its_namespaces_in_its_own_file() -> None:
    assert {"positions", "market", "prices"} <= DEMO_NAMESPACES


def test_no_library_module_names_a_namespace_of_the_demo() -> None:
    found = []
    for path in _library_files():
        if path.suffix != ".py":
            continue
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            literal = node.value if isinstance(node, ast.Constant) else None
            if literal in DEMO_NAMESPACES and (relative, literal) not in NOT_NAMESPACES:
                found.append(f"{relative}:{node.lineno}: {literal!r}")
            if isinstance(node, ast.Name | ast.alias | ast.Attribute):
                name = getattr(node, "id", None) or getattr(node, "name", None)
                name = name or getattr(node, "attr", None)
                if name in REMOVED:
                    found.append(f"{relative}:{getattr(node, 'lineno', '?')}: {name}")
    assert found == []


def test_no_other_registry_file_of_the_library_declares_them() -> None:
    for path in _library_files():
        if path.suffix == ".toml":
            declared = set(tomllib.loads(path.read_text()).get("namespaces", {}))
            assert not declared & DEMO_NAMESPACES, path


def test_the_allowances_are_still_needed() -> None:
    # An allowance that no longer matches anything must go (the list only shrinks).
    for relative, literal in NOT_NAMESPACES:
        tree = ast.parse((ROOT / relative).read_text())
        assert any(isinstance(n, ast.Constant) and n.value == literal for n in ast.walk(tree))
