"""Retention: trim only what every group has acknowledged, with a hard cap as the last resort.

For each group, everything before its oldest pending entry (or, with nothing pending, up to
its last delivered id) has been acked; the stream is trimmed with ``XTRIM MINID ~`` to the
smallest such position over all groups. ``~`` may trim less, never more. Past
``max_length`` the stream is capped anyway (``MAXLEN ~``): a group that falls that far behind
loses entries, and its consumers detect the gap and flush; it is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachebus.consumers.entries import parse_groups, stream_id, text
from cachebus.core._io import AsyncClient
from cachebus.core.connection import map_redis_errors

__all__ = ["TrimResult", "safe_min_id", "trim_acknowledged"]


@dataclass(frozen=True, slots=True)
class TrimResult:
    min_id: str | None
    removed: int
    capped: bool


async def safe_min_id(client: AsyncClient, stream: str, where: str = "Redis") -> str | None:
    """The smallest id some group still needs, or None when there are no groups."""
    with map_redis_errors(f"XINFO GROUPS {stream}", where):
        groups = parse_groups(await client.execute_command("XINFO GROUPS", stream))
        if not groups:
            return None
        pipe = client.pipeline(transaction=False)
        for name in groups:
            pipe.xpending(stream, name)
        summaries = await pipe.execute()
    positions: list[tuple[int, int]] = []
    for info, summary in zip(groups.values(), summaries, strict=True):
        if int(summary.get("pending") or 0) > 0 and summary.get("min"):
            positions.append(stream_id(text(summary["min"])))
        else:
            ms, seq = stream_id(info.last_delivered_id)
            positions.append((ms, seq + 1))
    ms, seq = min(positions)
    return f"{ms}-{seq}"


async def trim_acknowledged(
    client: AsyncClient, stream: str, *, max_length: int, where: str = "Redis"
) -> TrimResult:
    min_id = await safe_min_id(client, stream, where)
    removed = 0
    with map_redis_errors(f"XTRIM {stream}", where):
        if min_id is not None:
            removed += int(await client.xtrim(stream, minid=min_id, approximate=True))
        length = int(await client.xlen(stream))
        capped = length > max_length
        if capped:
            removed += int(await client.xtrim(stream, maxlen=max_length, approximate=True))
    return TrimResult(min_id, removed, capped)
