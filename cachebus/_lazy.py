"""Lazy package exports: a package names its public API and imports each name on first use.

Importing ``cachebus`` (or ``cachebus.contracts``...) then costs the package's own module only,
so ``cachebus --help`` does not load redis-py, pydantic and OpenTelemetry, and a submodule
import (``cachebus.contracts.errors``) does not load its siblings. Each package also imports
its names under ``TYPE_CHECKING``, so mypy and IDEs see real types, and defines ``__getattr__``
for the runtime only: mypy would otherwise accept any misspelt name as an attribute.
``tests/unit/test_public_api.py`` checks that the three lists agree.

Stdlib only: every layer of the library uses it, so it sits below them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``.

    ``exports`` maps each module to the names it provides; together they must be exactly the
    package's ``__all__``.
    """
    package = namespace["__name__"]
    where = {name: module for module, names in exports.items() for name in names}
    if sorted(where) != sorted(namespace["__all__"]):
        raise ImportError(f"{package}: __all__ and its lazy exports differ")

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # the next access is a plain global lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
