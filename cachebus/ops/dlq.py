"""``cachebus dlq list|show|replay|purge``: inspect and re-drive a group's dead letters.

A dead letter is the original stream entry (its fields, byte for byte) plus ``dlq_*`` fields:
entry id, reason, error, delivery count, member, time. *Replay* appends the original fields to
the stream again, so the event keeps its ``event_id``, and removes the dead letter only once
the append succeeded (a crash in between leaves a duplicate, which consumers apply harmlessly,
never a loss). The stream is shared: every group reads a replayed event, not just this one.

Entries that still do not decode under the current contract are skipped by replay unless
``--include-undecodable``: a consumer would dead-letter them again and flush its whole scope
each time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cachebus.ops._common import (
    JSON_OPT,
    PREFIX_OPT,
    REDIS_URL_OPT,
    STREAM_OPT,
    age,
    connect,
    err_console,
    fail,
    load_settings,
    now_ms,
    print_json,
    run,
)
from cachecore.connection import map_redis_errors
from consumers.entries import text
from contracts.codec import decode_fields
from contracts.errors import EventDecodeError
from contracts.events import InvalidationEvent
from contracts.keys import StreamKeys
from producers import DEFAULT_MAXLEN

__all__ = ["DeadLetter", "ReplayResult", "dlq_app", "purge", "read_dead_letters", "replay"]

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and re-drive a group's dead letters.")

_CHUNK = 100
_GROUP_OPT: Any = typer.Option(
    None, "--group", "-g", help="The consumer group (service). (env CACHEBUS_SERVICE)"
)
_IDS_OPT: Any = typer.Option(None, "--id", help="A dead-letter id (see list); repeat for several.")
_ALL_OPT: Any = typer.Option(False, "--all", help="Every dead letter of the group.")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    entry_id: str
    reason: str
    error: str
    deliveries: int
    at_ms: int
    consumer: str
    #: The original entry's fields (what replay appends again).
    fields: Mapping[bytes | str, bytes | str] = field(repr=False)
    event: InvalidationEvent | None = None
    decode_error: str | None = None

    def as_dict(self, *, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "entry_id": self.entry_id,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "at_ms": self.at_ms,
            "consumer": self.consumer,
            "event_id": self.event.event_id if self.event else None,
            "namespace": self.event.namespace if self.event else None,
            "kind": self.event.kind if self.event else None,
            "decode_error": self.decode_error,
        }
        if full:
            out["error"] = self.error
            out["event"] = self.event.model_dump(mode="json") if self.event else None
            out["fields"] = {text(k): text(v) for k, v in self.fields.items()}
        return out


def _letter(dlq_id: Any, raw: Mapping[Any, Any]) -> DeadLetter:
    meta = {text(k): text(v) for k, v in raw.items() if text(k).startswith("dlq_")}
    original = {k: v for k, v in raw.items() if not text(k).startswith("dlq_")}
    event = error = None
    try:
        event = decode_fields(original, entry_id=meta.get("dlq_entry_id")).event
    except EventDecodeError as exc:
        error = f"{exc.rule}: {exc}"
    return DeadLetter(
        id=text(dlq_id),
        entry_id=meta.get("dlq_entry_id", "?"),
        reason=meta.get("dlq_reason", "?"),
        error=meta.get("dlq_error", ""),
        deliveries=int(meta.get("dlq_deliveries", "0") or 0),
        at_ms=int(meta.get("dlq_at_ms", "0") or 0),
        consumer=meta.get("dlq_consumer", "?"),
        fields=original,
        event=event,
        decode_error=error,
    )


async def read_dead_letters(
    client: redis.asyncio.Redis,
    dlq_key: str,
    *,
    ids: Sequence[str] = (),
    limit: int | None = None,
    where: str = "Redis",
) -> list[DeadLetter]:
    """The named dead letters (missing ids are left out), or the oldest ``limit`` of them."""
    with map_redis_errors(f"XRANGE {dlq_key}", where):
        rows: list[Any]
        if ids:
            pipe = client.pipeline(transaction=False)
            for dlq_id in ids:
                pipe.xrange(dlq_key, dlq_id, dlq_id)
            rows = [row for reply in await pipe.execute() for row in reply]
        else:
            rows = list(await client.xrange(dlq_key, count=limit) or [])
    return [_letter(dlq_id, raw) for dlq_id, raw in rows]


@dataclass(slots=True)
class ReplayResult:
    #: (dead-letter id, new stream entry id)
    replayed: list[tuple[str, str]] = field(default_factory=list)
    #: (dead-letter id, why it was not replayed)
    skipped: list[tuple[str, str]] = field(default_factory=list)


async def replay(
    client: redis.asyncio.Redis,
    stream_key: str,
    dlq_key: str,
    letters: Sequence[DeadLetter],
    *,
    include_undecodable: bool = False,
    where: str = "Redis",
    progress: Callable[[int], None] = lambda n: None,
) -> ReplayResult:
    """Append each letter's original fields to the stream, then delete the letters appended."""
    result = ReplayResult()
    todo = []
    for letter in letters:
        if letter.event is None and not include_undecodable:
            result.skipped.append((letter.id, f"does not decode ({letter.decode_error})"))
        else:
            todo.append(letter)
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        pipe = client.pipeline(transaction=False)
        for letter in chunk:
            fields: dict[Any, Any] = dict(letter.fields)
            pipe.xadd(stream_key, fields, maxlen=DEFAULT_MAXLEN, approximate=True)
        with map_redis_errors(f"XADD {stream_key}", where):
            replies = await pipe.execute(raise_on_error=False)
        done = []
        for letter, reply in zip(chunk, replies, strict=True):
            if isinstance(reply, Exception):
                result.skipped.append((letter.id, f"XADD refused: {reply}"))
            else:
                result.replayed.append((letter.id, text(reply)))
                done.append(letter.id)
        if done:
            with map_redis_errors(f"XDEL {dlq_key}", where):
                await client.xdel(dlq_key, *done)
        progress(len(chunk))
    return result


async def purge(
    client: redis.asyncio.Redis, dlq_key: str, ids: Sequence[str] | None, where: str = "Redis"
) -> int:
    """Delete the named dead letters, or (``ids=None``) all of them; returns how many."""
    with map_redis_errors(f"XDEL {dlq_key}", where):
        if ids is None:
            count = int(await client.xlen(dlq_key))
            await client.unlink(dlq_key)
            return count
        removed = 0
        for start in range(0, len(ids), _CHUNK):
            removed += int(await client.xdel(dlq_key, *ids[start : start + _CHUNK]))
        return removed


# ---- the commands -----------------------------------------------------------------------------
def _target(command: str, group: str | None, **overrides: Any) -> tuple[Any, str]:
    settings = load_settings(command, **overrides)
    group = group or settings.service
    if not group:
        fail(command, "which group? pass --group NAME (or set CACHEBUS_SERVICE)", 2)
    return settings, group


def _selection(command: str, ids: list[str] | None, every: bool) -> list[str] | None:
    if bool(ids) == every:
        fail(command, "name the dead letters with --id ID (repeatable), or pass --all", 2)
    return None if every else list(ids or ())


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
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            letters = await read_dead_letters(client, key, limit=limit, where=where)
            with map_redis_errors(f"XLEN {key}", where):
                return key, int(await client.xlen(key)), letters

    key, depth, letters = run("dlq list", main)
    if json_out:
        print_json({"dlq": key, "depth": depth, "letters": [x.as_dict() for x in letters]})
        raise typer.Exit(0)
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
    raise typer.Exit(0)


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
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            return await read_dead_letters(client, key, ids=[dlq_id], where=where)

    letters = run("dlq show", main)
    if not letters:
        fail("dlq show", f"no dead letter {dlq_id} in group {group!r}", 1)
    document = letters[0].as_dict(full=True)
    if json_out:
        print_json(document)
    else:
        console = Console(highlight=False)
        for name, value in document.items():
            console.print(f"[bold]{name}[/]: {value}", soft_wrap=True)
    raise typer.Exit(0)


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
    raise typer.Exit(1 if any(w.startswith("XADD") for _, w in result.skipped) else 0)


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
        fail("dlq purge", f"this deletes {what} of group {group!r} for good; add --yes", 2)

    async def main() -> int:
        async with connect(settings) as (client, where):
            key = StreamKeys(settings.prefix).dead_letter(settings.stream, group)
            return await purge(client, key, wanted, where)

    removed = run("dlq purge", main)
    if json_out:
        print_json({"purged": removed})
    else:
        Console(highlight=False).print(f"purged {removed} dead letter(s) of group {group}")
    raise typer.Exit(0)
