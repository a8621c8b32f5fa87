"""The benchmarks' key registry (``registry.toml`` beside this module, package data).

Benchmarks measure cachebus, not a system: they bring neutral namespaces of their own.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from cachebus.contracts.registry import Registry

__all__ = ["bench_registry", "bench_registry_path"]


def bench_registry_path() -> Path:
    """The file itself (``cachebus consume --registry`` of the startup benchmark reads it)."""
    return Path(str(resources.files("cachebus.bench").joinpath("registry.toml")))


@functools.cache
def bench_registry() -> Registry:
    return Registry.from_file(bench_registry_path())
