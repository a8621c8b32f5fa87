"""``cachebus check``: the consistency checker from the command line.

Starts its own scratch ``redis-server`` (or uses ``--redis-url``, without the restart fault),
runs writers, readers, a consumer and faults for ``--duration`` seconds, waits for quiescence,
and compares every cached value with the source of truth. Prints a table and, with ``--json``,
the report as one JSON object on the last line; while it runs, a progress bar on stderr (when
it is a terminal) shows the phase and the load's progress. Exit code 0 when nothing was lost
or stale after quiescence, 1 otherwise, 2 for a wrong option.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cachebus.bench._report import emit
from cachebus.consistency import FAULTS, CheckConfig, Report, run_check
from cachebus.contracts.errors import CachebusError, ConfigError
from cachebus.exits import ExitCode

__all__ = ["check"]


def _rows(report: Report) -> list[list[Any]]:
    def pct(share: float | None) -> str:
        return "n/a" if share is None else f"{share * 100:.3f}%"

    goal = f">= {report.within_1s_goal * 100:g}%"
    rows: list[list[Any]] = [
        ["stale values after quiescence", report.stale_after_quiescence, "0"],
        ["events lost (never applied, no flush)", report.lost, "0"],
        ["events never published", report.unpublished, "0"],
        ["invalidations applied within 1 s, steady", pct(report.within_1s_steady), goal],
        ["invalidations applied within 1 s, all", pct(report.within_1s), ""],
        ["publish -> applied p50 / p99 / max (ms)",
         f"{report.lag_p50_ms:g} / {report.lag_p99_ms:g} / {report.lag_max_ms:g}", ""],
        ["reads older than 1 s during the run", report.reads_stale_over_1s, ""],
        ["writes / events / reads", f"{report.writes} / {report.events} / {report.reads}", ""],
        ["applied / covered by a flush", f"{report.applied} / {report.covered_by_flush}", ""],
        ["items cached at the end / checked",
         f"{report.keys_cached} / {report.keys_checked}", ""],
        ["fills refused (raced an invalidation)", report.cache.get("refused_fills", 0), ""],
        ["flushes", ", ".join(f"{k}={v}" for k, v in sorted(report.flushes.items())) or "none",
         ""],
        ["quiescence (s)", report.quiescence_s, ""],
    ]  # fmt: skip
    for fault in report.faults:
        rows.append([f"fault {fault.name} at {fault.started_s:.1f}s", fault.detail, ""])
    return rows


_PHASE_TEXT = {
    "starting": "starting Redis and the consumer",
    "load": "writers, readers and faults",
    "quiescence": "waiting for quiescence",
    "comparing": "comparing the cache with the source of truth",
}


async def _with_progress(config: CheckConfig) -> Report:
    """The check, with a progress bar on stderr (a terminal only: stdout, and so ``--json``'s
    last line, is untouched): its phase, and the load's seconds out of ``--duration``."""
    console = Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(_PHASE_TEXT["starting"], total=config.duration_s)
        load_started: list[float] = []

        def on_phase(phase: str) -> None:
            if phase == "load":
                load_started.append(time.monotonic())
            bar.update(task, description=_PHASE_TEXT[phase])

        async def tick() -> None:
            while True:
                if load_started:
                    elapsed = min(time.monotonic() - load_started[0], config.duration_s)
                    bar.update(task, completed=elapsed)
                await asyncio.sleep(0.25)

        ticker = asyncio.ensure_future(tick())
        try:
            return await run_check(config, on_phase=on_phase)
        finally:
            ticker.cancel()


def check(
    duration: float = typer.Option(20.0, "--duration", help="Seconds of load."),
    keys: int = typer.Option(500, "--keys", help="Items in the source of truth."),
    writers: int = typer.Option(4, "--writers"),
    write_rate: float = typer.Option(200.0, "--write-rate", help="Changes per second."),
    readers: int = typer.Option(8, "--readers"),
    read_rate: float = typer.Option(1000.0, "--read-rate", help="Reads per second (at most)."),
    source: str = typer.Option("memory", "--source", help="memory, or sqlite (with the outbox)."),
    consumer: str = typer.Option("subprocess", "--consumer", help="subprocess or inprocess."),
    faults: str = typer.Option(
        ",".join(FAULTS), "--faults", help=f"Comma-separated: {', '.join(FAULTS)}; or 'none'."
    ),
    redis_url: str = typer.Option(
        None, "--redis-url", help="Use this Redis instead of a scratch one (no redis_restart)."
    ),
    seed: int = typer.Option(1, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON on the last line."),
) -> None:
    """Measure consistency: stale values after quiescence, invalidations applied within 1 s."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    chosen = () if faults.strip() in {"", "none"} else tuple(f.strip() for f in faults.split(","))
    if redis_url and faults == ",".join(FAULTS):
        chosen = tuple(f for f in chosen if f != "redis_restart")
    try:
        config = CheckConfig(
            duration_s=duration, keys=keys, groups=max(1, min(25, keys)), writers=writers,
            write_rate=write_rate, readers=readers, read_rate=read_rate,
            source=cast(Any, source), consumer=cast(Any, consumer),  # checked by CheckConfig
            faults=chosen, redis_url=redis_url, seed=seed,
        )  # fmt: skip
        report = asyncio.run(_with_progress(config))
    except ConfigError as exc:
        typer.echo(f"cachebus check: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
    except CachebusError as exc:
        typer.echo(f"cachebus check failed: {exc}", err=True)
        sys.exit(ExitCode.FINDING)
    verdict = "PASSED" if report.passed else "FAILED"
    emit(
        f"consistency check: {verdict}",
        ["measure", "value", "goal"],
        _rows(report),
        report.as_dict(),
        as_json=as_json,
        notes=[
            "steady = events whose first second overlaps no fault (nor 2 s after one)",
        ],
    )
    sys.exit(ExitCode.OK if report.passed else ExitCode.FINDING)
