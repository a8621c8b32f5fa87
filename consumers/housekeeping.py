"""Housekeeping of a group member, on its own interval (``housekeeping_interval_s``).

Apart from the claim round (``claim_interval_s``, which bounds how long a dead member's entries
wait), a member periodically:

* checks the server's ``run_id``: a restart may have lost entries this member had seen
  (AOF everysec loses up to 1 s), and on a Redis Cluster a failover makes another node serve
  the stream, which may lack entries its primary had acknowledged (asynchronous replication);
  both flush the scope;
* records its registry beside the stream (again after a server change);
* removes idle members that hold nothing (``remove_idle_members_after_s``);
* trims the stream to what every group has acked (``retention``), at most once per
  ``retention_interval_s``.

It runs at once after an outage (:meth:`Housekeeper.run_soon`) and whenever the client starts
routing the stream to another cluster node.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from cachebus.consumers.config import ConsumerConfig, FlushReason
from cachebus.consumers.drift import DriftMonitor
from cachebus.consumers.entries import stream_id
from cachebus.consumers.group import StreamGroup
from cachebus.consumers.observe import ConsumerStats, monotonic
from cachebus.consumers.retention import trim_acknowledged

__all__ = ["Housekeeper"]

log = logging.getLogger("cachebus.consumer")

FlushFn = Callable[[Collection[str], FlushReason, str], Awaitable[None]]


class Housekeeper:
    def __init__(
        self,
        group: StreamGroup,
        config: ConsumerConfig,
        stats: ConsumerStats,
        flush: FlushFn,
        *,
        server_restarted: Callable[[], None],
        max_seen: Callable[[], tuple[int, int]],
        drift: DriftMonitor | None = None,
    ) -> None:
        self.group = group
        self.config = config
        self.stats = stats
        self.flush = flush
        self.server_restarted = server_restarted
        self.max_seen = max_seen
        self.drift = drift
        self._run_id: str | None = None
        self._serving: str | None = None
        self._next = 0.0
        self._next_retention = 0.0

    def due(self, now: float) -> bool:
        """Time for a round (or the cluster routes the stream to another node now)."""
        if self.group.serving_node() != self._serving:
            return True
        return now >= self._next

    def run_soon(self, *, retention: bool = False) -> None:
        """At the next iteration (after an outage; ``retention``: trim then too)."""
        self._next = 0.0
        if retention:
            self._next_retention = 0.0

    async def run(self) -> None:
        self._serving = self.group.serving_node()
        run_id = await self.group.run_id()
        changed = self._run_id is not None and run_id != self._run_id
        if self.group.clustered:
            await self._check_failover(run_id)
        elif changed:
            self.server_restarted()
            await self._server_changed()
        self._run_id = run_id
        if self.drift is not None:
            await self.drift.record(again=changed)
        await self._remove_idle_members()
        if self.config.retention and monotonic() >= self._next_retention:
            self._next_retention = monotonic() + self.config.retention_interval_s
            trimmed = await trim_acknowledged(
                self.group.client,
                self.group.stream,
                max_length=self.config.max_stream_length,
                where=self.group.where,
            )
            self.stats.trimmed_by_retention += trimmed.removed
        self._next = monotonic() + self.config.housekeeping_interval_s

    async def _remove_idle_members(self) -> None:
        if self.config.remove_idle_members_after_s <= 0:
            return
        idle_ms = int(self.config.remove_idle_members_after_s * 1000)
        for member in await self.group.members():
            name = str(member.get("name"))
            if (
                name != self.config.consumer
                and int(member.get("pending", 0)) == 0
                and int(member.get("idle", 0)) >= idle_ms
                and await self.group.remove_idle_member(name, idle_ms)
            ):
                self.stats.members_removed += 1
                log.info("removed idle member %s of group %s", name, self.config.group)

    async def _check_failover(self, run_id: str) -> None:
        """Cluster: flush when another node serves the partition than the one recorded."""
        recorded = await self.group.served_by()
        if recorded == run_id:
            return
        if recorded is not None:
            await self.flush(
                self.config.namespaces,
                FlushReason.FAILOVER,
                f"{self.group.stream} is served by another node now (run_id {recorded[:8]} -> "
                f"{run_id[:8]}); entries it had not replicated may be lost",
            )
        await self.group.mark_served_by(run_id)

    async def _server_changed(self) -> None:
        """The server restarted: writes we saw may be gone (AOF everysec loses up to 1 s)."""
        state = await self.group.stream_state()
        if state is None:
            return  # the stream is gone: the next read sees NOGROUP and recovers
        if stream_id(state.last_generated_id) < self.max_seen():
            await self.flush(
                self.config.namespaces,
                FlushReason.SERVER_CHANGED,
                "server restarted and lost entries this member had seen",
            )
