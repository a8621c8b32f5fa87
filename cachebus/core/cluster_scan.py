"""Pattern invalidation on a Redis Cluster: SCAN + UNLINK on every primary, across failovers.

SCAN covers one node. The step reads the topology (``CLUSTER SLOTS``), then scans each
*shard* (a set of slot ranges) on the primary serving it, UNLINKing what it finds as it goes,
as :mod:`cachebus.core.invalidation` does on one Redis.

A topology change must not leave a match behind:

* a shard whose node fails mid-scan (the round trip fails) is scanned again **from cursor 0**
  on whichever node serves those slots after re-reading the topology; a SCAN cursor means
  nothing on another node, and starting over also catches keys whose UNLINK had not reached
  the replica that was promoted;
* when every shard is done, the topology is read once more: a shard whose primary changed
  since it was scanned (a failover that completed just after), or slot ranges that moved
  (resharding), are scanned again.

Keys already found are UNLINKed by key, so the cluster client routes them to whichever node
owns their slot now. While no node serves some slots (a failover in progress), the step raises
:class:`BackendUnavailable` after a bounded number of topology reads; the caller retries (the
consumer keeps the entry pending and backs off), and the retry starts over, which is correct
because UNLINK is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cachebus.contracts.errors import BackendUnavailable, ConfigError
from cachebus.core._core import CacheCore
from cachebus.core._io import Batch, Step
from cachebus.core.invalidation import PatternResult, _paced, flush_step
from cachebus.core.leases import void_pattern_step

__all__ = ["Ranges", "cluster_pattern_step", "parse_cluster_slots", "topology_step"]

#: A shard: the slot ranges one primary serves, ``((start, end), ...)`` inclusive, sorted.
Ranges = tuple[tuple[int, int], ...]

#: Topology reads per pattern before giving up with BackendUnavailable (the caller retries).
MAX_TOPOLOGY_READS = 8


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_cluster_slots(reply: Any) -> dict[Ranges, str]:
    """``CLUSTER SLOTS`` (raw list, or redis-py's parsed dict) → {ranges: "host:port"}."""
    by_node: dict[str, list[tuple[int, int]]] = {}
    if isinstance(reply, Mapping):
        for (start, end), info in reply.items():
            host, port = info["primary"][:2]
            by_node.setdefault(f"{_text(host)}:{int(port)}", []).append((int(start), int(end)))
    else:
        for row in reply:
            start, end, primary = row[0], row[1], row[2]
            name = f"{_text(primary[0])}:{int(primary[1])}"
            by_node.setdefault(name, []).append((int(start), int(end)))
    return {tuple(sorted(ranges)): node for node, ranges in by_node.items()}


def topology_step() -> Step[dict[Ranges, str]]:
    """The current shards and their primaries, from any node."""
    (reply,) = yield Batch([("CLUSTER SLOTS",)], operation="CLUSTER SLOTS")
    return parse_cluster_slots(reply)


def cluster_pattern_step(
    core: CacheCore, namespace: str, pattern: str, max_keys: int | None = None
) -> Step[PatternResult]:
    match = core.keyspace.match(namespace, pattern)  # validates; refuses a bare '*'
    limit = core.config.pattern_max_keys if max_keys is None else max_keys
    if limit < 1:
        raise ConfigError(f"max_keys must be at least 1, got {limit}")
    return _voided_then(core, namespace, pattern, _ClusterScan(core, namespace, match, limit).run())


def _voided_then(
    core: CacheCore, namespace: str, pattern: str, scan: Step[PatternResult]
) -> Step[PatternResult]:
    # Before the values, as on one Redis: a fill landing during the scan finds its lease gone.
    yield from void_pattern_step(core, namespace, pattern)
    return (yield from scan)


class _ClusterScan:
    def __init__(self, core: CacheCore, namespace: str, match: str, limit: int) -> None:
        self.core = core
        self.namespace = namespace
        self.match = match
        self.limit = limit
        self.calls = 0
        self.deleted = 0
        self.pending: list[Any] = []
        #: Keys found per shard in its latest scan (a rescan starts its count over).
        self.found: dict[Ranges, int] = {}
        self.topology_reads = 0

    def _topology(self) -> Step[dict[Ranges, str]]:
        self.topology_reads += 1
        if self.topology_reads > MAX_TOPOLOGY_READS:
            raise BackendUnavailable(
                f"SCAN MATCH {self.match}: some shard had no reachable primary over "
                f"{MAX_TOPOLOGY_READS} topology reads (failover in progress?); retry later"
            )
        return (yield from topology_step())

    def run(self) -> Step[PatternResult]:
        topology = yield from self._topology()
        todo = dict(topology)
        done: dict[Ranges, str] = {}
        while todo:
            ranges, node = next(iter(todo.items()))
            finished = yield from self._scan(ranges, node)
            if finished is None:
                return (yield from self._escalate())
            if finished:
                done[ranges] = node
                del todo[ranges]
            else:
                # That node failed: serve the rest from the topology as it is now.
                topology = yield from self._topology()
                todo = {r: n for r, n in topology.items() if done.get(r) != n}
            if not todo:
                # Did a shard change hands after we scanned it? Then scan it again.
                topology = yield from self._topology()
                todo = {r: n for r, n in topology.items() if done.get(r) != n}
        yield from self._unlink_all()
        self.core.stats.invalidations += self.deleted
        self.core.stats.pattern_invalidations += 1
        return PatternResult(self.deleted, self.calls, False)

    def _scan(self, ranges: Ranges, node: str) -> Step[bool | None]:
        """Scan one shard from cursor 0. True: done; False: the node failed; None: over limit.

        What this shard's SCANs find is UNLINKed on the same node, riding in the next SCAN's
        round trip; what is left when the shard ends joins the keys UNLINKed at the end.
        """
        cfg = self.core.config
        self.found[ranges] = 0
        local: list[Any] = []
        cursor: Any = 0
        try:
            while True:
                calls: list[tuple[Any, ...]] = []
                unlinked = len(local) >= cfg.unlink_batch
                if unlinked:
                    yield from _paced(self.core, cfg.unlink_batch)
                    calls.append(("UNLINK", *local[: cfg.unlink_batch]))
                calls.append(("SCAN", cursor, "MATCH", self.match, "COUNT", cfg.scan_count))
                replies = yield Batch(
                    calls, operation=f"SCAN MATCH {self.match} on {node}",
                    raise_on_error=False, node=node,
                )  # fmt: skip
                _raise_unless_unavailable(replies)
                if any(isinstance(r, BackendUnavailable) for r in replies):
                    return False
                if unlinked:
                    self.deleted += int(replies[0])
                    del local[: cfg.unlink_batch]
                cursor, keys = replies[-1]
                self.calls += 1
                self.found[ranges] += len(keys)
                local.extend(keys)
                if sum(self.found.values()) > self.limit:
                    return None
                if int(cursor) == 0:
                    return True
        finally:
            self.pending.extend(local)

    def _unlink_all(self) -> Step[None]:
        size = self.core.config.unlink_batch
        while self.pending:
            chunk = self.pending[:size]
            yield from _paced(self.core, len(chunk))
            (count,) = yield Batch([("UNLINK", *chunk)], operation=f"UNLINK {self.match}")
            self.deleted += int(count)
            del self.pending[:size]

    def _escalate(self) -> Step[PatternResult]:
        # Past the cap a generation bump is cheaper than finishing the scan.
        (generation,) = yield from flush_step(self.core, [self.namespace])
        stats = self.core.stats
        stats.invalidations += self.deleted
        stats.pattern_invalidations += 1
        stats.escalations += 1
        return PatternResult(self.deleted, self.calls, True, generation)


def _raise_unless_unavailable(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception) and not isinstance(reply, BackendUnavailable):
            raise reply
