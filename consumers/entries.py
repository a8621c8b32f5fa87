"""Typed views of Redis stream replies: callers never index raw redis-py results.

The shapes differ between RESP2 and RESP3 and across Redis versions (XAUTOCLAIM gained its
third element, the deleted ids, in 7.0); every such difference is handled here and only here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

__all__ = [
    "ClaimResult",
    "Entry",
    "GroupState",
    "StreamState",
    "parse_claim",
    "parse_groups",
    "parse_raw_read",
    "parse_read",
    "parse_stream_info",
    "stream_id",
    "text",
]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def stream_id(value: str | bytes) -> tuple[int, int]:
    """``"1700000000000-3"`` as a comparable ``(ms, seq)`` tuple."""
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


class Entry(NamedTuple):
    """One stream entry as delivered. Empty ``fields``: trimmed while it was pending.

    A named tuple: one is built per entry read, on the consumer's hot path.
    """

    id: str
    fields: Mapping[bytes | str, bytes | str]
    #: Times Redis delivered it to this group (1 for a fresh read).
    deliveries: int = 1

    @property
    def trimmed(self) -> bool:
        return not self.fields


# A named tuple's own constructor is a Python function: building the tuple directly skips a
# frame per entry read. Every field is given, so the defaults it would fill do not matter.
_new_entry = partial(tuple.__new__, Entry)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    next_cursor: str
    entries: list[Entry]
    #: Ids that were in the pending list but no longer in the stream (Redis >= 7.0).
    deleted_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupState:
    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    #: None when Redis cannot tell (a group created at an arbitrary id, before it reaches the tail).
    entries_read: int | None
    lag: int | None


@dataclass(frozen=True, slots=True)
class StreamState:
    length: int
    entries_added: int
    last_generated_id: str
    max_deleted_entry_id: str
    first_entry_id: str
    groups: Mapping[str, GroupState]

    @property
    def removed(self) -> int:
        """Entries ever removed from the stream (trimmed or deleted)."""
        return self.entries_added - self.length


def _entries(raw: Sequence[Any] | None) -> list[Entry]:
    out: list[Entry] = []
    for item in raw or ():
        entry_id, fields = item[0], item[1]
        out.append(
            Entry(entry_id.decode() if type(entry_id) is bytes else str(entry_id), fields or {})
        )
    return out


def parse_read(reply: Any, key: str) -> list[Entry]:
    """Entries of ``key`` in an XREADGROUP/XREAD reply *after* redis-py's callback (RESP2 list
    or RESP3 map). Cluster pipelines route by command name and cannot take the bytes name that
    skips the callback (see :func:`parse_raw_read`), so clustered reads come through here."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        for name, value in reply.items():
            if text(name) == key:
                # redis-py's RESP3 parser wraps the entry list once more: {key: [[entries]]}.
                if len(value) == 1 and isinstance(value[0], list):
                    return _entries(value[0])
                return _entries(value)
        return []
    for name, value in reply:
        if text(name) == key:
            return _entries(value)
    return []


def parse_raw_read(reply: Any, key: str) -> list[Entry]:
    """Entries of ``key`` in a *raw* XREAD/XREADGROUP reply (no redis-py callback applied).

    The group runtime sends these commands by a bytes name, which redis-py's callback table
    (keyed by str) does not match: the reply stays as the parser produced it, and turning each
    entry's flat field list into a dict here costs a fraction of redis-py's generic conversion.
    """
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    want = key.encode()
    for name, raw_entries in streams:
        if name != want and text(name) != key:
            continue
        out: list[Entry] = []
        append = out.append
        for item in raw_entries or ():
            entry_id, flat = item[0], item[1]
            eid = entry_id.decode() if type(entry_id) is bytes else str(entry_id)
            if not flat:
                fields = {}
            elif len(flat) == 2:
                fields = {flat[0]: flat[1]}
            else:
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
            append(_new_entry((eid, fields, 1)))
        return out
    return []


def parse_claim(reply: Sequence[Any]) -> ClaimResult:
    deleted = [text(x) for x in reply[2]] if len(reply) > 2 and reply[2] else []
    return ClaimResult(text(reply[0]), _entries(reply[1]), deleted)


def _get(info: Mapping[Any, Any], name: str) -> Any:
    if name in info:
        return info[name]
    return info.get(name.encode())


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_groups(reply: Sequence[Mapping[Any, Any]]) -> dict[str, GroupState]:
    groups: dict[str, GroupState] = {}
    for info in reply:
        name = text(_get(info, "name"))
        groups[name] = GroupState(
            name=name,
            consumers=int(_get(info, "consumers") or 0),
            pending=int(_get(info, "pending") or 0),
            last_delivered_id=text(_get(info, "last-delivered-id") or "0-0"),
            entries_read=_opt_int(_get(info, "entries-read")),
            lag=_opt_int(_get(info, "lag")),
        )
    return groups


def parse_stream_info(info: Mapping[Any, Any], groups: Sequence[Mapping[Any, Any]]) -> StreamState:
    return StreamState(
        length=int(_get(info, "length") or 0),
        entries_added=int(_get(info, "entries-added") or 0),
        last_generated_id=text(_get(info, "last-generated-id") or "0-0"),
        max_deleted_entry_id=text(_get(info, "max-deleted-entry-id") or "0-0"),
        first_entry_id=text(_get(info, "recorded-first-entry-id") or "0-0"),
        groups=parse_groups(groups),
    )
