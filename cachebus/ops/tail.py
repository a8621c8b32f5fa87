"""``cachebus tail``: follow invalidation events live, optionally only some namespaces.

Reads with plain ``XREAD`` (no consumer group): watching never takes entries from a service,
never acks, never creates anything. Starts at the end of the stream (``--from-start`` or
``--from ID`` to look back) and stops after ``--count`` events, after ``--seconds``, or on
Ctrl-C. ``--json`` prints one JSON object per line (JSON Lines) for ``jq``: the one command
whose ``--json`` is not a single object on the last line, because it follows a stream that
has no end (a watcher wants each event as it arrives, not a document after Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio
import typer
from rich.console import Console

from cachebus.consumers.entries import parse_raw_read, text
from cachebus.contracts.codec import decode_entries
from cachebus.contracts.errors import CachebusError, EventDecodeError
from cachebus.contracts.events import InvalidationEvent
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import map_redis_errors
from cachebus.exits import ExitCode
from cachebus.ops._common import (
    PREFIX_OPT,
    REDIS_URL_OPT,
    STREAM_OPT,
    UnknownName,
    connect,
    fail,
    load_settings,
    run,
)
from cachebus.registry_cmd import REGISTRY_OPT

__all__ = ["TailItem", "follow", "tail"]

#: Longest single block: a stop condition is checked at least this often (milliseconds).
_BLOCK_MS = 500


@dataclass(frozen=True, slots=True)
class TailItem:
    entry_id: str
    event: InvalidationEvent | None
    headers: dict[str, str]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entry_id": self.entry_id}
        if self.event is not None:
            out["event"] = self.event.model_dump(mode="json")
            out["traceparent"] = self.headers.get("traceparent")
        else:
            out["error"] = self.error
        return out


async def _last_id(client: redis.asyncio.Redis, key: str, where: str) -> str:
    with map_redis_errors(f"XREVRANGE {key}", where):
        last = await client.xrevrange(key, count=1)
    return text(last[0][0]) if last else "0-0"


async def follow(
    client: redis.asyncio.Redis,
    key: str,
    on_item: Callable[[TailItem], None],
    *,
    namespaces: Collection[str] = (),
    start: str = "$",
    count: int | None = None,
    seconds: float | None = None,
    where: str = "Redis",
) -> int:
    """Call ``on_item`` for each event (of ``namespaces``, when given); returns how many.

    Undecodable entries are shown too (they are what dead letters are made of), unless a
    namespace filter is set: their namespace cannot be known.
    """
    position = await _last_id(client, key, where) if start == "$" else start
    deadline = None if seconds is None else time.monotonic() + seconds
    shown = 0
    while count is None or shown < count:
        block = _BLOCK_MS
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            block = max(1, min(block, int(left * 1000)))
        with map_redis_errors(f"XREAD {key}", where):
            # bytes command name: the raw reply, parsed like the consumer runtime does
            reply = await client.execute_command(
                b"XREAD", "COUNT", 100, "BLOCK", block, "STREAMS", key, position
            )
        entries = parse_raw_read(reply, key)
        if not entries:
            continue
        position = entries[-1].id
        for entry, decoded in zip(
            entries, decode_entries([(e.id, e.fields) for e in entries]), strict=True
        ):
            if isinstance(decoded, EventDecodeError):
                if namespaces:
                    continue
                item = TailItem(entry.id, None, {}, f"{decoded.rule}: {decoded}")
            elif namespaces and decoded.event.namespace not in namespaces:
                continue
            else:
                item = TailItem(entry.id, decoded.event, dict(decoded.headers))
            on_item(item)
            shown += 1
            if count is not None and shown >= count:
                break
    return shown


def _line(item: TailItem) -> str:
    if item.event is None:
        return f"[red]{item.entry_id}  undecodable: {item.error}[/]"
    e = item.event
    when = datetime.fromtimestamp(e.created_at_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    if e.kind == "keys":
        what = f"{len(e.keys)} key(s): {', '.join(e.keys[:5])}{' ...' if len(e.keys) > 5 else ''}"
    elif e.kind == "pattern":
        what = f"pattern {e.pattern}"
    else:
        what = "[yellow]flush namespace[/]"
    reason = f" ({e.reason})" if e.reason else ""
    return (
        f"{when} {item.entry_id} [bold]{e.namespace}[/] {what}{reason} "
        f"[dim]by {e.producer} id {e.event_id}[/]"
    )


def tail(
    namespace: list[str] = typer.Option(
        None, "--namespace", "-n", help="Only events of this namespace; repeat for several."
    ),
    from_start: bool = typer.Option(False, "--from-start", help="Begin at the oldest entry."),
    from_id: str = typer.Option(None, "--from", help="Begin after this entry id."),
    count: int = typer.Option(None, "--count", min=1, help="Stop after this many events."),
    seconds: float = typer.Option(None, "--seconds", min=0.0, help="Stop after this long."),
    stream: str = STREAM_OPT,
    redis_url: str = REDIS_URL_OPT,
    prefix: str = PREFIX_OPT,
    registry: Path = REGISTRY_OPT,
    json_out: bool = typer.Option(
        False,
        "--json",
        help="One JSON object per event, as it arrives (JSON Lines).",
    ),
) -> None:
    """Follow invalidation events as they are published (no consumer group involved)."""
    if from_start and from_id:
        fail("tail", "--from-start and --from are exclusive", ExitCode.USAGE)
    settings = load_settings(
        "tail", redis_url=redis_url, prefix=prefix, stream=stream, registry=registry
    )
    try:  # with a registry (given or found), a namespace filter must name its namespaces
        known = settings.registry_or_none()
        if known is not None:
            for name in namespace or ():
                known.get(name)
    except CachebusError as exc:
        fail("tail", str(exc), ExitCode.USAGE)
    start = "0-0" if from_start else (from_id or "$")
    console = Console(highlight=False)

    def show(item: TailItem) -> None:
        if json_out:
            sys.stdout.write(json.dumps(item.as_dict(), sort_keys=True) + "\n")
            sys.stdout.flush()
        else:
            console.print(_line(item), soft_wrap=True)

    async def main() -> int:
        async with connect(settings) as (client, where):
            key = StreamKeys(settings.prefix).stream(settings.stream)
            with map_redis_errors(f"EXISTS {key}", where):
                if not await client.exists(key):  # a typo would wait forever for nothing
                    raise UnknownName(
                        f"no stream {key} on {where}: check --stream and --prefix (a consumer "
                        "creates it when it starts)"
                    )
            return await follow(
                client,
                key,
                show,
                namespaces=frozenset(namespace or ()),
                start=start,
                count=count,
                seconds=seconds,
                where=where,
            )

    run("tail", main)
    raise typer.Exit(ExitCode.OK)
