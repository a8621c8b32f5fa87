"""Output of every benchmark: a rich table for people, one JSON line for scripts."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["emit", "machine", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    if q <= 0 or len(ordered) == 1:
        return float(ordered[0])
    if q >= 100:
        return float(ordered[-1])
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    frac = rank - low
    return float(ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * frac)


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "system": platform.system(),
    }


def emit(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    summary: Mapping[str, Any],
    *,
    as_json: bool,
    notes: Sequence[str] = (),
) -> None:
    """Print the table (always) and, with ``as_json``, the summary as the very last line."""
    console = Console(stderr=as_json, highlight=False)
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*(_fmt(cell) for cell in row))
    console.print(table)
    for note in notes:
        console.print(note)
    if as_json:
        print(json.dumps({"benchmark": title, **summary, "machine": machine()}, sort_keys=True))


def _fmt(cell: Any) -> str:
    if isinstance(cell, float):
        if abs(cell) >= 1000:
            return f"{cell:,.0f}"
        if abs(cell) >= 10:
            return f"{cell:.1f}"
        return f"{cell:.3f}"
    if isinstance(cell, int):
        return f"{cell:,}"
    return str(cell)
