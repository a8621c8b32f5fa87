"""``cachebus bench ...``: each benchmark measures us against a baseline in the same run.

Every benchmark prints a table and, with ``--json``, one JSON object as its last line.
Each lives in its own module and registers itself on :data:`bench_app` when imported.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["bench_app"]

bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks against their baselines, measured in the same run."
)

#: Modules that register a ``cachebus bench <name>`` command (imported for their side effect).
BENCH_MODULES: tuple[str, ...] = (
    "scan",
    "codec",
    "publish",
    "consume",
    "e2e",
    "fanout",
    "fill",
    "cluster",
    "startup",
    "cdc",
)

for _name in BENCH_MODULES:
    importlib.import_module(f"cachebus.bench.{_name}")
