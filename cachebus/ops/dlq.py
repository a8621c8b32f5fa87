"""``cachebus dlq list|show|replay|purge``: inspect and re-drive a group's dead letters.

See :mod:`cachebus.ops.dead_letters` for what a dead letter holds and how replay keeps the
``event_id``. The stream is shared: every group reads a replayed event, not just this one.

Entries that still do not decode under the current contract are skipped by replay unless
``--include-undecodable``: a consumer would dead-letter them again and flush its whole scope
each time.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cachebus.consumers.entries import text
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import map_redis_errors
from cachebus.exits import ExitCode
from cachebus.ops._common import (
    JSON_OPT,
    PREFIX_OPT,
    REDIS_URL_OPT,
    STREAM_OPT,
    UnknownName,
    age,
    connect,
    err_console,
    fail,
    load_settings,
    now_ms,
    print_json,
    run,
)
from cachebus.ops.dead_letters import DeadLetter, ReplayResult, purge, read_dead_letters, replay

__all__ = ["dlq_app"]

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and re-drive a group's dead letters.")

_GROUP_OPT: Any = typer.Option(
    None,
    "--service",
    "-s",
    "--group",
    "-g",
    help="The service whose consumer group's dead letters to use. (env CACHEBUS_SERVICE)",
)
_IDS_OPT: Any = typer.Option(None, "--id", help="A dead-letter id (see list); repeat for several.")
_ALL_OPT: Any = typer.Option(False, "--all", help="Every dead letter of the group.")


# ---- the commands -----------------------------------------------------------------------------
def _target(command: str, group: str | None, **overrides: Any) -> tuple[Any, str]:
    settings = load_settings(command, **overrides)
    group = group or settings.service
    if not group:
        fail(
            command, "which service? pass --service NAME (or set CACHEBUS_SERVICE)", ExitCode.USAGE
        )
    return settings, group


def _selection(command: str, ids: list[str] | None, every: bool) -> list[str] | None:
    if bool(ids) == every:
        fail(
            command,
            "name the dead letters with --id ID (repeatable), or pass --all",
            ExitCode.USAGE,
        )
    return None if every else list(ids or ())


async def _known_group(client: Any, keys: StreamKeys, stream: str, group: str, where: str) -> None:
    """A group that neither exists on the stream nor left dead letters is a typo: say which
    groups there are, rather than show an empty list."""
    key = keys.stream(stream)
    dlq_key = keys.dead_letter(stream, group)
    with map_redis_errors(f"EXISTS {dlq_key}", where):
        if await client.exists(dlq_key):
            return
    with map_redis_errors(f"XINFO GROUPS {key}", where):
        exists = await client.exists(key)
        groups = [text(g["name"]) for g in await client.xinfo_groups(key)] if exists else []
    if group not in groups:
        known = ", ".join(groups) or "none"
        raise UnknownName(
            f"no consumer group {group!r} on {key} and no dead letters for it "
            f"(groups: {known}); pass --service with one of them"
        )


@dlq_app.command("list")
def list_cmd(
    group: str = _GROUP_OPT,
    limit: int = typer.Option(50, min=1, help="Show at most this many (oldest first)."),
    stream: str = STREAM_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """The oldest dead letters of a group, with why each one is there."""
    settings, group = _target("dlq list", group, redis_url=redis_url, prefix=prefix, stream=stream)

    async def main() -> tuple[str, int, list[DeadLetter]]:
        async with connect(settings) as (client, where):
            await _known_group(client, StreamKeys(settings.prefix), settings.stream, group, where)
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            letters = await read_dead_letters(client, key, limit=limit, where=where)
            with map_redis_errors(f"XLEN {key}", where):
                return key, int(await client.xlen(key)), letters

    key, depth, letters = run("dlq list", main)
    if json_out:
        print_json({"dlq": key, "depth": depth, "letters": [x.as_dict() for x in letters]})
        raise typer.Exit(ExitCode.OK)
    table = Table(title=f"{key}: {depth:,} dead letter(s)", show_edge=False)
    for column in ("id", "entry", "reason", "deliveries", "age", "namespace", "kind", "event"):
        table.add_column(column)
    now = now_ms()
    for x in letters:
        table.add_row(
            x.id, x.entry_id, x.reason, str(x.deliveries), age((now - x.at_ms) / 1000.0),
            x.event.namespace if x.event else "[red]?[/]", x.event.kind if x.event else "-",
            x.event.event_id if x.event else f"[red]{x.decode_error}[/]",
        )  # fmt: skip
    Console(highlight=False).print(table)
    raise typer.Exit(ExitCode.OK)


@dlq_app.command("show")
def show_cmd(
    dlq_id: str = typer.Argument(..., help="The dead-letter id (see list)."),
    group: str = _GROUP_OPT,
    stream: str = STREAM_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """One dead letter in full: the error, the event, the original fields."""
    settings, group = _target("dlq show", group, redis_url=redis_url, prefix=prefix, stream=stream)

    async def main() -> list[DeadLetter]:
        async with connect(settings) as (client, where):
            await _known_group(client, StreamKeys(settings.prefix), settings.stream, group, where)
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            return await read_dead_letters(client, key, ids=[dlq_id], where=where)

    letters = run("dlq show", main)
    if not letters:
        fail("dlq show", f"no dead letter {dlq_id} in group {group!r}", ExitCode.FINDING)
    document = letters[0].as_dict(full=True)
    if json_out:
        print_json(document)
    else:
        console = Console(highlight=False)
        for name, value in document.items():
            console.print(f"[bold]{name}[/]: {value}", soft_wrap=True)
    raise typer.Exit(ExitCode.OK)


@dlq_app.command("replay")
def replay_cmd(
    ids: list[str] = _IDS_OPT,
    every: bool = _ALL_OPT,
    group: str = _GROUP_OPT,
    include_undecodable: bool = typer.Option(
        False, help="Replay entries that do not decode too (each will poison again)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed."),
    stream: str = STREAM_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Append dead letters to the stream again (same event_id), then delete them."""
    settings, group = _target(
        "dlq replay", group, redis_url=redis_url, prefix=prefix, stream=stream
    )
    wanted = _selection("dlq replay", ids, every)

    async def main() -> ReplayResult:
        async with connect(settings) as (client, where):
            keys = StreamKeys(settings.prefix)
            await _known_group(client, keys, settings.stream, group, where)
            dlq_key = keys.dead_letter(settings.stream, group)
            letters = await read_dead_letters(client, dlq_key, ids=wanted or (), where=where)
            if dry_run:
                return ReplayResult(
                    replayed=[(x.id, "") for x in letters if x.event or include_undecodable],
                    skipped=[(x.id, "does not decode") for x in letters
                             if not (x.event or include_undecodable)],
                )  # fmt: skip
            with Progress(console=err_console(), transient=True) as bar:
                task = bar.add_task("replaying", total=len(letters))
                return await replay(
                    client,
                    keys.stream(settings.stream),
                    dlq_key,
                    letters,
                    include_undecodable=include_undecodable,
                    where=where,
                    progress=lambda n: bar.advance(task, n),
                )

    result = run("dlq replay", main)
    if json_out:
        print_json(
            {
                "dry_run": dry_run,
                "replayed": [{"id": a, "entry_id": b} for a, b in result.replayed],
                "skipped": [{"id": a, "why": b} for a, b in result.skipped],
            }
        )
    else:
        console = Console(highlight=False)
        verb = "would replay" if dry_run else "replayed"
        console.print(f"{verb} {len(result.replayed)} dead letter(s) of group {group}")
        for dlq_id, why in result.skipped:
            console.print(f"[yellow]skipped {dlq_id}[/]: {why}")
    failed = any(w.startswith("XADD") for _, w in result.skipped)
    raise typer.Exit(ExitCode.FINDING if failed else ExitCode.OK)


@dlq_app.command("purge")
def purge_cmd(
    ids: list[str] = _IDS_OPT,
    every: bool = _ALL_OPT,
    group: str = _GROUP_OPT,
    yes: bool = typer.Option(False, "--yes", help="Confirm: dead letters are deleted for good."),
    stream: str = STREAM_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Delete dead letters for good (asks for --yes)."""
    settings, group = _target("dlq purge", group, redis_url=redis_url, prefix=prefix, stream=stream)
    wanted = _selection("dlq purge", ids, every)
    if not yes:
        what = "every dead letter" if wanted is None else f"{len(wanted)} dead letter(s)"
        fail(
            "dlq purge", f"this deletes {what} of group {group!r} for good; add --yes",
            ExitCode.USAGE,
        )  # fmt: skip

    async def main() -> int:
        async with connect(settings) as (client, where):
            await _known_group(client, StreamKeys(settings.prefix), settings.stream, group, where)
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            return await purge(client, key, wanted, where)

    removed = run("dlq purge", main)
    if json_out:
        print_json({"purged": removed})
    else:
        Console(highlight=False).print(f"purged {removed} dead letter(s) of group {group}")
    raise typer.Exit(ExitCode.OK)
