"""``cachebus status``: the report of :mod:`cachebus.ops.status` as tables, JSON, or a page.

* ``cachebus status``: tables per stream and group (``--json``: one JSON document);
* ``cachebus status --serve [--host H] [--port P]``: the status page at ``/status`` (the same
  page the sidecar serves on its health port, without the latency plot, which needs a
  consumer in the process), until Ctrl-C.

Exit codes (:class:`cachebus.exits.ExitCode`): 0 reported, 1 Redis unreachable or refused a
command (the message names it), 2 a wrong option or a stream that does not exist, 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from cachebus.contracts.keys import StreamKeys
from cachebus.exits import ExitCode
from cachebus.health_server import HealthServer
from cachebus.ops._common import (
    JSON_OPT,
    PREFIX_OPT,
    REDIS_URL_OPT,
    STREAMS_OPT,
    connect,
    fail,
    load_settings,
    now_ms,
    print_json,
    run,
)
from cachebus.ops.status import StreamStatus, collect_status
from cachebus.ops.status_page import StatusPage
from cachebus.ops.status_render import render_status
from cachebus.registry_cmd import REGISTRY_OPT
from cachebus.settings import CachebusSettings

__all__ = ["status"]


async def _serve(settings: CachebusSettings, names: list[str], host: str, port: int) -> None:
    async with connect(settings) as (client, where):
        page = StatusPage(
            client, [StreamKeys(settings.prefix)], names, where=where,
            title=f"cachebus status: {where}",
        ).start()  # fmt: skip
        pages = {"/status": page.render, "/": page.render}
        try:
            server = await HealthServer(None, host=host, port=port, pages=pages).start()
        except OSError as exc:
            await page.close()
            fail("status", f"cannot serve on {host}:{port}: {exc}", ExitCode.USAGE)
        typer.echo(f"serving http://{host}:{server.port}/status (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()
            await page.close()


def status(
    stream: list[str] = STREAMS_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    registry: Path = REGISTRY_OPT,
    json_out: bool = JSON_OPT,
    serve: bool = typer.Option(
        False, "--serve", help="Serve the status page at /status until Ctrl-C."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="With --serve: the address to bind."),
    port: int = typer.Option(8089, "--port", help="With --serve: the port (0: any free one)."),
) -> None:
    """Per stream and group: lag, pending, dead letters, flushes, counters, registry versions."""
    settings = load_settings("status", redis_url=redis_url, prefix=prefix, registry=registry)
    names = list(stream or [settings.stream])
    if serve:
        run("status", lambda: _serve(settings, names, host, port))
        raise typer.Exit(ExitCode.OK)

    async def main() -> tuple[list[StreamStatus], str]:
        local = settings.registry_or_none()  # optional: a file to compare the records with
        async with connect(settings) as (client, where):
            found = await collect_status(
                client,
                StreamKeys(settings.prefix),
                names,
                where=where,
                retired_after_s=settings.retired_group_after_s,
                registry=local,
            )
            return found, where

    statuses, where = run("status", main)
    missing = [s.key for s in statuses if not s.exists]
    if missing:
        fail(
            "status",
            f"no stream {', '.join(missing)} on {where}: "
            "check --stream and --prefix (or nothing was published there yet)",
            ExitCode.USAGE,
        )
    if json_out:
        print_json({"generated_at_ms": now_ms(), "streams": [s.as_dict() for s in statuses]})
    else:
        render_status(statuses, Console(highlight=False))
    raise typer.Exit(ExitCode.OK)
