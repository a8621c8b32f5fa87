"""Dead letters of a consumer group: read them, re-drive them to the stream, delete them.

A dead letter is the original stream entry (its fields, byte for byte) plus ``dlq_*`` fields:
entry id, reason, error, delivery count, member, time. :func:`replay` appends the original
fields to the stream again, so the event keeps its ``event_id``, and deletes the dead letter
only once the append succeeded: a crash in between leaves a duplicate, which consumers apply
harmlessly, never a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from cachebus.consumers.entries import text
from cachebus.contracts.codec import decode_fields
from cachebus.contracts.errors import EventDecodeError
from cachebus.contracts.events import InvalidationEvent
from cachebus.core.connection import map_redis_errors
from cachebus.producers._core import DEFAULT_MAXLEN

__all__ = ["DeadLetter", "ReplayResult", "purge", "read_dead_letters", "replay"]

#: Entries per round trip when replaying or purging.
_CHUNK = 100


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
    newest: bool = False,
    where: str = "Redis",
) -> list[DeadLetter]:
    """The named dead letters (missing ids are left out), or the oldest ``limit`` of them
    (with ``newest``, the newest, newest first)."""
    with map_redis_errors(f"XRANGE {dlq_key}", where):
        rows: list[Any]
        if ids:
            pipe = client.pipeline(transaction=False)
            for dlq_id in ids:
                pipe.xrange(dlq_key, dlq_id, dlq_id)
            rows = [row for reply in await pipe.execute() for row in reply]
        elif newest:
            rows = list(await client.xrevrange(dlq_key, count=limit) or [])
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
