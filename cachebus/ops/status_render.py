"""The tables of ``cachebus status``: per stream, its groups, then its registry versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from cachebus.ops._common import age
from cachebus.ops.registry_status import render_registry_status

if TYPE_CHECKING:
    from cachebus.ops.status import GroupStatus, StreamStatus

__all__ = ["render_status"]


def render_status(statuses: Sequence[StreamStatus], console: Console) -> None:
    """The tables of ``cachebus status`` (without ``--json``)."""
    for s in statuses:
        if not s.exists or s.problem:
            console.print(f"[bold]{s.key}[/]: [yellow]{s.problem}[/]")
            continue
        console.print(
            f"[bold]{s.key}[/]: {s.length:,} entries ({s.entries_added:,} ever added), "
            f"first {s.first_entry_id or '-'}, last {s.last_generated_id}; "
            f"retention may trim before {s.retention_min_id or '-'}"
        )
        table = Table(show_edge=False)
        for column in ("group", "consumers", "lag", "pending", "oldest pending", "dlq",
                       "last flush", "state"):  # fmt: skip
            table.add_column(column, justify="left" if column in ("group", "state") else "right")
        for g in s.groups:
            state = []
            if g.retired:
                state.append("[yellow]retired[/]")
            if g.holds_retention and s.length:
                state.append("holds retention")
            if g.synced is False:
                state.append("[yellow]not synced[/]")
            flush = (
                f"{g.last_flush_reason} {age(g.last_flush_age_s)} ago"
                if g.last_flush_reason
                else "-"
            )
            table.add_row(
                g.name,
                str(g.consumers),
                "?" if g.lag is None else f"{g.lag:,}",
                f"{g.pending:,}",
                age(g.oldest_pending_age_s),
                "?" if g.dlq_depth is None else f"[red]{g.dlq_depth:,}[/]" if g.dlq_depth else "0",
                flush,
                ", ".join(state) or "[green]ok[/]",
            )
        console.print(table)
        _counters(s.groups, console)
        if s.registry is not None:
            render_registry_status(s.registry, console)


def _counters(statuses_groups: Sequence[GroupStatus], console: Console) -> None:
    """What each member applied, duplicated, claimed, dead-lettered and flushed (the counters
    kept in Redis: they outlive the member's process)."""
    rows = [
        (g.name, member, counts)
        for g in statuses_groups
        for member, counts in sorted(g.counters.get("members", {}).items())
    ]
    if not rows:
        return
    table = Table(title="counters (kept in Redis)", show_edge=False)
    for column in ("group", "member", "applied", "dup", "claimed", "dead", "flushes"):
        table.add_column(column, justify="left" if column in ("group", "member") else "right")
    for group, member, counts in rows:
        flushes = sum(v for k, v in counts.items() if k.startswith("flushes."))
        table.add_row(
            group, member, *(f"{counts.get(n, 0):,}" for n in
                             ("applied", "duplicates", "claimed", "dead_lettered")),
            f"{flushes:,}",
        )  # fmt: skip
    console.print(table)
