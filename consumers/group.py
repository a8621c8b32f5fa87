"""Stream-side operations of one consumer group, typed, with redis-py errors translated.

Besides the stream and its group, a small hash beside the stream (``StreamKeys.group_meta``)
records the group's *epoch* (a random token rotated before the group is (re)created), the
epoch the service's cache scope was last *synced* to, the trimmed-gap *deficit* already
covered by a flush, and the last flush with its reason (for ``cachebus status``). The member's
counters (:mod:`cachebus.consumers.counters`) ride along with the acks, dead letters and
flush records, in the same round trips.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from cachebus.consumers.entries import (
    ClaimResult,
    Entry,
    StreamState,
    parse_claim,
    parse_raw_read,
    parse_read,
    parse_stream_info,
    text,
)
from cachebus.contracts.errors import GroupMissingError
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.partitions import key_slot
from cachebus.core._client import is_cluster
from cachebus.core._io import AsyncClient, Batch, Script, execute_async
from cachebus.core.connection import is_loss_reply, map_redis_errors
from cachebus.core.once import execute_once

__all__ = ["GroupMeta", "ReadResult", "StreamGroup", "is_group_lost"]

log = logging.getLogger("cachebus.consumer")

#: Remove a member only if it still has no pending entries and is still idle: checked and done
#: atomically, because XGROUP DELCONSUMER silently discards a member's pending entries.
_REMOVE_IDLE_MEMBER = Script(
    """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then return -1 end
local members = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, m in ipairs(members) do
  local name, idle
  for i = 1, #m, 2 do
    if m[i] == 'name' then name = m[i + 1] elseif m[i] == 'idle' then idle = m[i + 1] end
  end
  if name == ARGV[2] then
    if tonumber(idle) < tonumber(ARGV[3]) then return -2 end
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  end
end
return -3
"""
)


@dataclass(frozen=True, slots=True)
class GroupMeta:
    epoch: str | None
    synced: str | None
    deficit: int
    fallback_mark: str | None
    #: Redis Cluster: run_id of the node that served the stream when last checked.
    served_by: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[Any, Any] | None) -> GroupMeta:
        data = {text(k): text(v) for k, v in (raw or {}).items()}
        return cls(
            epoch=data.get("epoch"),
            synced=data.get("synced"),
            deficit=int(data.get("deficit", "0") or 0),
            fallback_mark=data.get("fallback_mark"),
            served_by=data.get("served_by"),
        )


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read; a *checking* read also carries the group meta and the stream's state as they
    were just before it and just after it (see :mod:`cachebus.consumers.gaps`)."""

    entries: list[Entry]
    state: StreamState | None
    meta: GroupMeta | None
    group_missing: bool
    after: StreamState | None = None

    @property
    def checked(self) -> bool:
        return self.meta is not None


class StreamGroup:
    def __init__(
        self,
        client: AsyncClient,
        keys: StreamKeys,
        stream: str,
        group: str,
        consumer: str,
        *,
        where: str = "Redis",
    ) -> None:
        self.client = client
        self.stream_name = stream
        self.stream = keys.stream(stream)
        self.meta_key = keys.group_meta(stream, group)
        self.dlq = keys.dead_letter(stream, group)
        self.counters_key = keys.counters(stream, group)
        self.registry_key = keys.registry_record(stream)
        self.group = group
        self.consumer = consumer
        self.where = where
        #: False once Redis refused a counter write (an ACL from before counters existed).
        self.counting = True

    # ---- reading ------------------------------------------------------------------------
    async def read(
        self,
        *,
        count: int,
        block_ms: int | None,
        pending: bool = False,
        start_id: str = "0",
        check: bool = True,
    ) -> ReadResult:
        """One round trip: XREADGROUP, and with ``check`` the group meta and XINFO STREAM/GROUPS
        just before it and XINFO STREAM/GROUPS just after it (in the same pipeline: the state
        after a blocking read is taken when it returns).

        ``pending=True`` reads this member's own pending entries after ``start_id`` (no block);
        otherwise new entries (``>``), blocking up to ``block_ms``.
        """
        # A bytes command name: redis-py applies no reply callback (see parse_raw_read); a
        # cluster client routes by the name and needs it as text.
        clustered = self.clustered
        command: str | bytes = "XREADGROUP" if clustered else b"XREADGROUP"
        args: list[Any] = [command, "GROUP", self.group, self.consumer, "COUNT", count]
        if block_ms is not None and not pending:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", self.stream, start_id if pending else ">"]
        state = ("XINFO STREAM", self.stream), ("XINFO GROUPS", self.stream)
        commands = [("HGETALL", self.meta_key), *state, args, *state] if check else [args]
        # Sent once, never retried by the client: a second `>` would deliver other entries
        # while the first copy's wait, unseen, in our pending list (see cachebus.core.once).
        with map_redis_errors(f"XREADGROUP {self.stream}", self.where):
            replies = await execute_once(self.client, commands, key=self.stream)
        reply = replies[3] if check else replies[0]
        missing = is_group_lost(reply)
        for result in (replies[0], reply):
            if isinstance(result, Exception) and not is_group_lost(result):
                with map_redis_errors(f"XREADGROUP {self.stream}", self.where):
                    raise result
        parse = parse_read if clustered else parse_raw_read
        entries = [] if missing else parse(reply, self.stream)
        if not check:
            return ReadResult(entries, None, None, missing)
        meta_raw, info, groups, _, info_after, groups_after = replies
        meta = GroupMeta.parse(meta_raw if isinstance(meta_raw, dict) else None)
        return ReadResult(
            entries, _state(info, groups), meta, missing, _state(info_after, groups_after)
        )

    async def pending_deliveries(self, entries: Sequence[Entry]) -> list[Entry]:
        """The same entries with their delivery counts (one XPENDING over their id range)."""
        if not entries:
            return []
        with map_redis_errors(f"XPENDING {self.stream}", self.where):
            rows = await self.client.xpending_range(
                self.stream,
                self.group,
                min=entries[0].id,
                max=entries[-1].id,
                count=len(entries) * 2 + 10,
                consumername=self.consumer,
            )
        counts = {text(r["message_id"]): int(r["times_delivered"]) for r in rows}
        return [Entry(e.id, e.fields, counts.get(e.id, e.deliveries)) for e in entries]

    async def claim(self, cursor: str, *, min_idle_ms: int, count: int) -> ClaimResult:
        command = ("XAUTOCLAIM", self.stream, self.group, self.consumer, min_idle_ms, cursor)
        with map_redis_errors(f"XAUTOCLAIM {self.stream}", self.where):
            (reply,) = await execute_once(
                self.client, [(*command, "COUNT", count)], key=self.stream
            )
            if isinstance(reply, Exception):
                raise reply
        return parse_claim(reply)

    async def heartbeat(self, ids: Sequence[str]) -> None:
        """Reset the idle time of our own entries (XCLAIM to ourselves, JUSTID: no delivery)."""
        if not ids:
            return
        command = ("XCLAIM", self.stream, self.group, self.consumer, 0, *ids, "JUSTID")
        with map_redis_errors(f"XCLAIM {self.stream}", self.where):
            (reply,) = await execute_once(
                self.client, [command], key=self.stream, parse_justid=True
            )
            if isinstance(reply, Exception):
                raise reply

    # ---- settling -----------------------------------------------------------------------
    async def ack(self, ids: Sequence[str], counts: Sequence[tuple[str, int]] = ()) -> int:
        """XACK ``ids``; ``counts`` (counter field, increment) go in the same round trip."""
        if not ids:
            return 0
        commands: list[tuple[Any, ...]] = [("XACK", self.stream, self.group, *ids)]
        if self.counting:
            commands += [("HINCRBY", self.counters_key, name, n) for name, n in counts]
        with map_redis_errors(f"XACK {self.stream}", self.where):
            # A command's error comes back in its slot (the ack's is raised below); a failed
            # round trip raises, on a cluster too.
            acked, *rest = await execute_async(self.client, Batch(commands))
            if isinstance(acked, Exception):
                raise acked
        self._counted(rest)
        return int(acked)

    def _counted(self, replies: Sequence[Any]) -> None:
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None and self.counting:
            self.counting = False  # acks go on without counters; the ACL needs regenerating
            log.warning(
                "Redis refused the counters of group %s (%s): acks go on without them; "
                "regenerate the ACL (cachebus acl render) to keep them",
                self.group,
                error,
            )

    def _count(self, pipe: Any, counter: str) -> None:
        if self.counting:
            pipe.hincrby(self.counters_key, f"{counter}:{self.consumer}", 1)

    async def dead_letter(
        self, entry: Entry, *, reason: str, error: str, deliveries: int, maxlen: int = 100_000
    ) -> str:
        """Copy the entry to the group's dead-letter stream, then ack it (in this order: a crash
        in between leaves it pending, so it is dead-lettered again, never lost)."""
        fields: dict[Any, Any] = dict(entry.fields)
        fields.update(
            {
                "dlq_entry_id": entry.id,
                "dlq_stream": self.stream,
                "dlq_group": self.group,
                "dlq_consumer": self.consumer,
                "dlq_reason": reason,
                "dlq_error": error[:2000],
                "dlq_deliveries": str(deliveries),
                "dlq_at_ms": str(int(time.time() * 1000)),
            }
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.dlq, fields, maxlen=maxlen, approximate=True)
        pipe.xack(self.stream, self.group, entry.id)
        self._count(pipe, "dead_lettered")
        with map_redis_errors(f"XADD {self.dlq}", self.where):
            dlq_id, acked, *rest = await pipe.execute(raise_on_error=False)
            for reply in (dlq_id, acked):
                if isinstance(reply, Exception):
                    raise reply
        self._counted(rest)
        return text(dlq_id)

    # ---- the group's life ---------------------------------------------------------------
    async def create(self) -> str:
        """Rotate the epoch, then create the group at ``$`` (MKSTREAM); returns the epoch.

        The epoch changes *before* the group exists, so a member that sees the new group
        before our flush finished also sees an epoch its scope is not synced to. A group
        another member created meanwhile (BUSYGROUP) is fine: both flush.
        """
        epoch = await self.rotate_epoch()
        with map_redis_errors(f"XGROUP CREATE {self.stream}", self.where):
            try:
                await self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return epoch

    async def rotate_epoch(self) -> str:
        epoch = secrets.token_hex(8)
        with map_redis_errors(f"HSET {self.meta_key}", self.where):
            await self.client.hset(self.meta_key, mapping={"epoch": epoch, "deficit": 0})
            await self.client.hdel(self.meta_key, "fallback_mark")
        return epoch

    async def stream_state(self) -> StreamState | None:
        """XINFO STREAM and GROUPS, or None when the stream does not exist."""
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("XINFO STREAM", self.stream)
        pipe.execute_command("XINFO GROUPS", self.stream)
        with map_redis_errors(f"XINFO STREAM {self.stream}", self.where):
            info, groups = await pipe.execute(raise_on_error=False)
        if isinstance(info, Exception) or isinstance(groups, Exception):
            return None
        return parse_stream_info(info, groups)

    async def mark_synced(
        self,
        epoch: str | None,
        *,
        reason: str | None,
        deficit: int | None = None,
        fallback_mark: str | None = None,
    ) -> None:
        mapping: dict[bytes | bytearray | memoryview[int] | str | int | float, str | int] = {}
        if epoch is not None:
            mapping["synced"] = epoch
        if deficit is not None:
            mapping["deficit"] = deficit
        if fallback_mark is not None:
            mapping["fallback_mark"] = fallback_mark
        if reason is not None:
            mapping["last_flush_reason"] = reason
            mapping["last_flush_ms"] = int(time.time() * 1000)
        if not mapping:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.meta_key, mapping=mapping)
        if reason is not None:
            pipe.hincrby(self.meta_key, f"flushes:{reason}", 1)
            self._count(pipe, f"flushes.{reason}")
        with map_redis_errors(f"HSET {self.meta_key}", self.where):
            replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], Exception):
                raise replies[0]
        self._counted(replies[2:])

    async def remove_idle_member(self, name: str, idle_ms: int) -> bool:
        """Delete member ``name`` only if it has no pending entries and is idle ``idle_ms``."""
        call = _REMOVE_IDLE_MEMBER.call([self.stream], [self.group, name, idle_ms])
        with map_redis_errors(f"XGROUP DELCONSUMER {self.stream}", self.where):
            try:
                result = await self.client.execute_command(*call.evalsha())
            except redis.exceptions.NoScriptError:
                result = await self.client.execute_command(*call.eval())
        return int(result) >= 0

    async def members(self) -> list[dict[str, Any]]:
        with map_redis_errors(f"XINFO CONSUMERS {self.stream}", self.where):
            try:
                rows = await self.client.execute_command("XINFO CONSUMERS", self.stream, self.group)
            except redis.exceptions.ResponseError as exc:
                # The stream itself is gone (XINFO says "no such key", not NOGROUP): housekeeping
                # right after a restart without persistence meets this before any read does.
                if str(exc).startswith("no such key"):
                    raise GroupMissingError(f"XINFO CONSUMERS {self.stream}: {exc}") from exc
                raise
        return [
            {text(k): (text(v) if isinstance(v, bytes) else v) for k, v in r.items()} for r in rows
        ]

    async def run_id(self) -> str:
        """The run_id of the server; on a cluster, of the node serving this stream's slot."""
        with map_redis_errors("INFO server", self.where):
            if isinstance(self.client, redis.asyncio.RedisCluster):
                node = self.client.get_node_from_key(self.stream)
                info = await self.client.info("server", target_nodes=node)
            else:
                info = await self.client.info("server")
        return str(info.get("run_id", ""))

    @property
    def clustered(self) -> bool:
        return is_cluster(self.client)

    def serving_node(self) -> str | None:
        """Cluster: ``host:port`` of the node the client routes this stream to (no I/O)."""
        if not isinstance(self.client, redis.asyncio.RedisCluster):
            return None
        nodes = self.client.nodes_manager.slots_cache.get(key_slot(self.stream))
        return str(nodes[0].name) if nodes else None  # None: topology not known yet

    async def served_by(self) -> str | None:
        """The run_id recorded in the group meta as serving this partition."""
        with map_redis_errors(f"HGET {self.meta_key}", self.where):
            raw = await self.client.hget(self.meta_key, "served_by")
        return None if raw is None else text(raw)

    async def mark_served_by(self, run_id: str) -> None:
        with map_redis_errors(f"HSET {self.meta_key}", self.where):
            await self.client.hset(self.meta_key, "served_by", run_id)


def _state(info: Any, groups: Any) -> StreamState | None:
    if info is None or isinstance(info, Exception) or isinstance(groups, Exception):
        return None
    return parse_stream_info(info, groups)


def is_group_lost(value: Any) -> bool:
    """A reply saying the group or its stream is gone: NOGROUP, or (Redis 7.0+) the UNBLOCKED
    a read blocked on the stream gets when the key is deleted under it."""
    if not isinstance(value, redis.exceptions.ResponseError):
        return False
    return is_loss_reply(str(value))
