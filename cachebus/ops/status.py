"""What ``cachebus status`` reports: is every service caught up? Per stream and consumer group.

For each group: its members, lag (entries not read yet), pending (read, not acked), the age of
the oldest pending entry, the dead-letter depth, the last flush with its reason (from the
group meta hash the consumers keep), and what its members applied, duplicated, claimed and
dead-lettered (the counters kept in Redis: they survive a member's crash). For each stream:
length, what retention may trim up to (the oldest entry some group still needs), the groups
holding it back, and which registry version each producer and member runs (with drift).

A few round trips per stream, all reads: safe to run against production at any time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from cachebus.consumers.counters import parse_counters
from cachebus.consumers.entries import parse_stream_info, stream_id, text
from cachebus.consumers.retention import safe_min_id
from cachebus.contracts.errors import AccessDenied
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core.connection import map_redis_errors
from cachebus.ops._common import now_ms
from cachebus.ops.registry_status import RegistryStatus, collect_registry_status

__all__ = ["GroupStatus", "MemberStatus", "StreamStatus", "collect_status"]


@dataclass(frozen=True, slots=True)
class MemberStatus:
    name: str
    pending: int
    idle_s: float


@dataclass(frozen=True, slots=True)
class GroupStatus:
    name: str
    consumers: int
    #: Entries added to the stream that the group has not read (None: Redis cannot tell).
    lag: int | None
    #: Entries read by a member and not acknowledged yet.
    pending: int
    oldest_pending_id: str | None
    #: Seconds since the oldest pending entry was added to the stream.
    oldest_pending_age_s: float | None
    last_delivered_id: str
    entries_read: int | None
    #: None: this user may not read the dead-letter stream (``refused`` lists it).
    dlq_depth: int | None
    last_flush_reason: str | None
    last_flush_age_s: float | None
    flushes: Mapping[str, int]
    #: The members' cache scope is synced to the group's current epoch (None: the group
    #: meta could not be read).
    synced: bool | None
    #: Seconds since the most recently active member did anything (None: no member).
    idle_s: float | None
    #: No member, or every member idle longer than the retirement threshold.
    retired: bool
    #: The oldest entry this group still needs is what retention stops at.
    holds_retention: bool
    members: tuple[MemberStatus, ...] = ()
    #: The counters kept in Redis: ``{"totals": {...}, "members": {member: {...}}}``.
    counters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    name: str
    key: str
    exists: bool
    length: int = 0
    entries_added: int = 0
    first_entry_id: str | None = None
    last_generated_id: str | None = None
    max_deleted_entry_id: str | None = None
    #: Retention may trim everything before this id (None: no group, or no stream).
    retention_min_id: str | None = None
    groups: tuple[GroupStatus, ...] = field(default_factory=tuple)
    problem: str | None = None
    registry: RegistryStatus | None = None
    #: Commands this user was refused, with ``collect_status(refused=...)`` (a page that shows
    #: what it may read rather than nothing).
    refused: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["registry"] = self.registry.as_dict() if self.registry is not None else None
        return out


def _age_of(entry_id: str | None, now: int) -> float | None:
    if entry_id is None:
        return None
    return max(0.0, (now - stream_id(entry_id)[0]) / 1000.0)


def _needed(pending: int, oldest: str | None, last_delivered: str) -> str:
    """The oldest id this group still needs (as retention computes it)."""
    if pending and oldest:
        return oldest
    ms, seq = stream_id(last_delivered)
    return f"{ms}-{seq + 1}"


async def _one_stream(
    client: redis.asyncio.Redis,
    keys: StreamKeys,
    name: str,
    *,
    where: str,
    retired_after_s: float,
    tolerate: bool = False,
) -> StreamStatus:
    key = keys.stream(name)
    refused: list[str] | None = [] if tolerate else None
    pipe = client.pipeline(transaction=False)
    pipe.type(key)
    pipe.execute_command("XINFO STREAM", key)
    pipe.execute_command("XINFO GROUPS", key)
    with map_redis_errors(f"XINFO STREAM {key}", where):
        kind_raw, info, groups_raw = await pipe.execute(raise_on_error=False)
    kind_raw = _unless_refused(f"TYPE {key}", kind_raw, where, refused)
    if kind_raw is None:  # TYPE refused: XINFO STREAM tells a stream from no key
        missing = isinstance(info, Exception) and "no such key" in str(info).lower()
        kind_raw = "none" if missing else "stream"
    kind = text(kind_raw)
    if kind == "none":
        return StreamStatus(name, key, exists=False, problem="no such stream")
    if kind != "stream":
        return StreamStatus(name, key, exists=True, problem=f"{key} holds a {kind}, not a stream")
    _unless_refused(f"XINFO STREAM {key}", info, where, None)
    _unless_refused(f"XINFO GROUPS {key}", groups_raw, where, None)
    state = parse_stream_info(info, groups_raw)
    names = list(state.groups)
    pipe = client.pipeline(transaction=False)
    commands = []
    for group in names:
        pipe.xpending(key, group)
        pipe.xinfo_consumers(key, group)
        pipe.xlen(keys.dead_letter(name, group))
        pipe.hgetall(keys.group_meta(name, group))
        pipe.hgetall(keys.counters(name, group))
        commands += [f"XPENDING {key} {group}", f"XINFO CONSUMERS {key} {group}",
                     f"XLEN {keys.dead_letter(name, group)}",
                     f"HGETALL {keys.group_meta(name, group)}",
                     f"HGETALL {keys.counters(name, group)}"]  # fmt: skip
    with map_redis_errors(f"XPENDING {key}", where):
        raw = await pipe.execute(raise_on_error=False) if names else []
        retention = await safe_min_id(client, key, where) if names else None
    replies = [
        _unless_refused(command, reply, where, None if n % 5 < 2 else refused)
        for n, (command, reply) in enumerate(zip(commands, raw, strict=True))
    ]
    now = now_ms()
    groups = []
    for n, group in enumerate(names):
        summary, members_raw, dlq_depth, meta_raw, counters_raw = replies[5 * n : 5 * n + 5]
        status = _group_status(
            state.groups[group],
            summary,
            members_raw,
            None if dlq_depth is None else int(dlq_depth),
            None if meta_raw is None else {text(k): text(v) for k, v in meta_raw.items()},
            now=now,
            retention=retention,
            retired_after_s=retired_after_s,
        )
        counters = parse_counters(counters_raw or {}).as_dict()
        groups.append(dataclasses.replace(status, counters=counters))
    return StreamStatus(
        name,
        key,
        exists=True,
        length=state.length,
        entries_added=state.entries_added,
        first_entry_id=state.first_entry_id if state.length else None,
        last_generated_id=state.last_generated_id,
        max_deleted_entry_id=state.max_deleted_entry_id,
        retention_min_id=retention,
        groups=tuple(groups),
        refused=tuple(refused or ()),
    )


def _unless_refused(command: str, reply: Any, where: str, refused: list[str] | None) -> Any:
    """A pipelined reply; an error reply raises as ours (NOPERM: AccessDenied naming the
    command), never read as data, except a refusal noted in ``refused`` (then None)."""
    if not isinstance(reply, Exception):
        return reply
    try:
        with map_redis_errors(command, where):
            raise reply
    except AccessDenied:
        if refused is None:
            raise
        refused.append(command)
        return None


def _group_status(
    info: Any,
    summary: Mapping[str, Any],
    members_raw: Sequence[Mapping[Any, Any]],
    dlq_depth: int | None,
    meta: Mapping[str, str] | None,
    *,
    now: int,
    retention: str | None,
    retired_after_s: float,
) -> GroupStatus:
    pending = int(summary.get("pending") or 0)
    oldest = text(summary["min"]) if pending and summary.get("min") else None
    members = tuple(
        MemberStatus(
            text(m.get("name") or m.get(b"name")),
            int(m.get("pending") or m.get(b"pending") or 0),
            int(m.get("idle") or m.get(b"idle") or 0) / 1000.0,
        )
        for m in members_raw
    )
    idle = min((m.idle_s for m in members), default=None)
    synced = (
        None
        if meta is None
        else meta.get("epoch") is not None and meta.get("epoch") == meta.get("synced")
    )
    meta = meta or {}
    flushed_ms = int(meta["last_flush_ms"]) if meta.get("last_flush_ms") else None
    return GroupStatus(
        name=info.name,
        consumers=info.consumers,
        lag=info.lag,
        pending=pending,
        oldest_pending_id=oldest,
        oldest_pending_age_s=_age_of(oldest, now),
        last_delivered_id=info.last_delivered_id,
        entries_read=info.entries_read,
        dlq_depth=dlq_depth,
        last_flush_reason=meta.get("last_flush_reason"),
        last_flush_age_s=None if flushed_ms is None else max(0.0, (now - flushed_ms) / 1000.0),
        flushes={k.split(":", 1)[1]: int(v) for k, v in meta.items() if k.startswith("flushes:")},
        synced=synced,
        idle_s=idle,
        retired=idle is None or idle >= retired_after_s,
        holds_retention=retention is not None
        and _needed(pending, oldest, info.last_delivered_id) == retention,
        members=members,
    )


async def collect_status(
    client: redis.asyncio.Redis,
    keys: StreamKeys,
    streams: Sequence[str],
    *,
    where: str = "Redis",
    retired_after_s: float = 24 * 3600.0,
    registry: Registry | None = None,
    tolerate_refusals: bool = False,
) -> list[StreamStatus]:
    """The status of each named stream (logical names, as in ``ConsumerConfig.stream``);
    ``registry``, when given, is compared with the registries the participants recorded.

    A refused command raises :class:`AccessDenied` naming it; with ``tolerate_refusals``, what
    a refused read would have told (a group's dead letters, meta and counters, the registry
    records) is left unknown instead, and the refused commands are listed in ``refused``.
    """
    out = []
    for name in streams:
        one = await _one_stream(
            client, keys, name, where=where, retired_after_s=retired_after_s,
            tolerate=tolerate_refusals,
        )  # fmt: skip
        if one.exists and not one.problem:
            try:
                recorded = await collect_registry_status(
                    client, keys, name, where=where, local=registry
                )
            except AccessDenied:
                if not tolerate_refusals:
                    raise
                refused = (*one.refused, f"HGETALL {keys.registry_record(name)}")
                one = dataclasses.replace(one, refused=refused)
            else:
                one = dataclasses.replace(one, registry=recorded)
        out.append(one)
    return out
