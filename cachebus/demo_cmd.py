"""``cachebus demo``: the main job (``make demo``). A live view while it runs, a report after."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from cachebus.contracts.errors import CachebusError
from cachebus.demo import DemoConfig, DemoReport, run_demo
from cachebus.demo.registry import SERVICES
from cachebus.exits import ExitCode
from cachebus.ops._common import warn_unknown_variables

__all__ = ["demo"]


def _live_table(snapshot: dict[str, Any]) -> Group:
    stats = snapshot["stats"]
    table = Table(title=f"cachebus demo — {snapshot['elapsed']:.0f} s", expand=False)
    for column in ("service", "writes / reads", "published", "applied", "lag", "pending",
                   "L1 entries", "flushes (group / L1)"):  # fmt: skip
        table.add_column(column, justify="left" if column == "service" else "right")
    for role in ("api", "workers", *(r for r in ("admin", "cdc") if stats.get(r))):
        s = stats.get(role, {})
        table.add_row(role, str(s.get("writes", "-")), str(s.get("published", "-")),
                      "", "", "", "", "")  # fmt: skip
    for role in SERVICES:
        s = stats.get(role, {})
        flushes = (
            f"{sum(s.get('group_flushes', {}).values())} / {sum(s.get('l1_flushes', {}).values())}"
        )
        table.add_row(role, str(s.get("reads", "-")), "", str(s.get("applied", "-")),
                      str(s.get("lag", "-")), str(s.get("pending", "-")),
                      str(s.get("l1_size", "-")), flushes)  # fmt: skip
    timeline = Table.grid()
    for at, event in snapshot["timeline"][-6:]:
        timeline.add_row(f"[dim]{at:6.1f} s[/dim]  {event}")
    return Group(table, timeline)


def _print_report(console: Console, report: DemoReport) -> None:
    table = Table(title="after quiescence")
    for column in ("service", "events to apply", "applied", "lost", "duplicates",
                   "stale L2 / checked", "stale L1 / checked", "p50 ms", "p99 ms",
                   "flushes (reason)"):  # fmt: skip
        table.add_column(column, justify="left" if column == "service" else "right")
    for name, r in report.services.items():
        reasons = {**{f"group {k}": v for k, v in r.group_flushes.items()},
                   **{f"L1 {k}": v for k, v in r.l1_flushes.items()}}  # fmt: skip
        table.add_row(
            name, f"{r.expected:,}", f"{r.applied:,}", str(r.lost), str(r.duplicates),
            f"{r.stale_l2} / {r.l2_checked}", f"{r.stale_l1} / {r.l1_checked}",
            f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
            ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none",
        )  # fmt: skip
    console.print(table)
    console.print("published: " + ", ".join(f"{k} {v:,}" for k, v in report.published.items()))
    console.print(report.postgres, markup=False)  # it may name an extra: [cdc]
    if report.admin:
        a = report.admin
        per_service = "; ".join(
            f"{name} applied {r.admin_applied:,}/{r.admin_expected:,}, lost {r.admin_lost}, "
            f"stale {r.admin_stale}/{r.admin_checked} cached"
            for name, r in report.services.items()
        )
        console.print(
            f"admin fixes (no publish, no outbox row): {a['transactions']:,} transactions, "
            f"{a['changes']:,} row changes -> {a['events']:,} events from the commit log; "
            + per_service
        )
    for at, event in report.timeline:
        console.print(f"  {at:6.1f} s  {event}")
    if report.trace:
        console.print(f"example trace {report.trace['trace_id']}:")
        for span in report.trace["spans"]:
            console.print(f"    {span}")
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]"
    console.print(
        f"{verdict}: lost {report.lost}, stale after quiescence {report.stale}"
        + ("" if report.quiesced else ", consumers did not catch up in time")
    )
    console.print(f"[dim]logs, spans and the source of truth: {report.run_dir}[/dim]")


def demo(
    seconds: float = typer.Option(30.0, help="How long the writers write."),
    run_dir: Path = typer.Option(None, help="Where logs and data go (default .demo/run-*)."),
    redis_url: str = typer.Option(
        None,
        "--redis-url",
        # CACHEBUS_REDIS_URL like every command; REDIS_URL, which `make demo` documented
        # first, stays a fallback.
        envvar=["CACHEBUS_REDIS_URL", "REDIS_URL"],
        show_envvar=False,
        help="Use this Redis instead of starting two; no restart fault. "
        "(env CACHEBUS_REDIS_URL, else REDIS_URL)",
    ),
    registry: Path = typer.Option(
        None,
        envvar="CACHEBUS_REGISTRY",
        show_envvar=False,
        help="A registry file declaring the demo's namespaces (default: the demo's own, "
        "cachebus/demo/registry.toml). (env CACHEBUS_REGISTRY)",
    ),
    postgres: bool = typer.Option(
        True,
        "--postgres/--no-postgres",
        envvar="CACHEBUS_DEMO_POSTGRES",
        show_envvar=False,
        help="Add PostgreSQL (the local binaries, started on a free port, or --database): "
        "admin fixes written without publishing, relayed from the commit log. --no-postgres "
        "runs as where there is none. (env CACHEBUS_DEMO_POSTGRES=0)",
    ),
    database: str = typer.Option(
        None,
        "--database",
        envvar="CACHEBUS_DEMO_DATABASE_URL",
        show_envvar=False,
        help="A PostgreSQL database (wal_level=logical) instead of the local binaries; the "
        "demo creates public.risk_limits, a slot and a publication (dropped at the end). "
        "(env CACHEBUS_DEMO_DATABASE_URL)",
    ),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Run the audited system in miniature under faults; exit 1 if anything was lost or stale."""
    warn_unknown_variables("demo")
    console = Console(stderr=json_out, width=None if sys.stdout.isatty() else 150)
    config = DemoConfig(seconds=seconds, run_dir=run_dir, registry=registry,
                        redis_url=redis_url or None, postgres=postgres,
                        database=database or None)  # fmt: skip
    try:
        report = _run(config, console)
    except CachebusError as exc:  # e.g. no redis-server, a port taken: say so, no traceback
        typer.echo(f"cachebus demo: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    _print_report(console, report)
    if json_out:
        print(json.dumps(report.as_dict(), default=str))
    sys.exit(ExitCode.OK if report.passed else ExitCode.FINDING)


def _run(config: DemoConfig, console: Console) -> DemoReport:
    def notice(line: str) -> None:
        console.print(line, markup=False)

    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            return run_demo(config, lambda snap: live.update(_live_table(snap)), notice)
    else:
        last = [0.0]

        def plain(snapshot: dict[str, Any]) -> None:
            if snapshot["elapsed"] - last[0] >= 5:
                last[0] = snapshot["elapsed"]
                stats = snapshot["stats"]
                console.print(
                    f"{snapshot['elapsed']:5.1f} s  "
                    + "  ".join(
                        f"{r}: {stats.get(r, {}).get('applied', '-')} applied" for r in SERVICES
                    )
                )

        return run_demo(config, plain, notice)
