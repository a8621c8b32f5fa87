"""``health()`` on a Redis Cluster: the same verdicts, judged over every primary.

INFO and DBSIZE are asked of each primary. Counters (hits, misses, evictions, keys, clients)
are summed; memory is judged on the fullest primary, because one full shard evicts (or refuses
writes) however empty the others are. The per-namespace key counts come from a SCAN sample
spread over the primaries, within the same budget of SCAN calls as on one Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachebus.core._core import CacheCore
from cachebus.core._io import Batch, Step
from cachebus.core._probe import _SERVER_FIELDS, _evictions_per_hour, count_namespaces
from cachebus.core.cluster_scan import topology_step
from cachebus.core.health import HealthReport, KeyCount, Observations, evaluate, overall

__all__ = ["cluster_health_step"]

_SUMMED = ("evicted_keys", "keyspace_hits", "keyspace_misses", "connected_clients", "maxclients")


def _fullness(info: Mapping[str, Any]) -> float:
    used = float(info.get("used_memory", 0))
    cap = float(info.get("maxmemory", 0)) or float(info.get("total_system_memory", 0))
    return used / cap if cap > 0 else used


def merge_info(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """One INFO-like view of a cluster: the fullest primary, with counters summed."""
    fullest: dict[str, Any] = max(infos, key=_fullness)
    merged = dict(fullest)
    for name in _SUMMED:
        if any(name in info for info in infos):
            merged[name] = sum(int(info.get(name, 0)) for info in infos)
    merged["uptime_in_seconds"] = min(int(info.get("uptime_in_seconds", 0)) for info in infos)
    merged["cluster_primaries"] = len(infos)
    return merged


def cluster_health_step(core: CacheCore) -> Step[HealthReport]:
    return _health(core)


def _health(core: CacheCore) -> Step[HealthReport]:
    topology = yield from topology_step()
    nodes = sorted(set(topology.values()))
    infos: list[dict[str, Any]] = []
    dbsize = 0
    for node in nodes:
        info_reply, dbsize_reply = yield Batch(
            [("INFO", "memory", "stats", "clients", "server"), ("DBSIZE",)],
            operation=f"INFO on {node}",
            node=node,
        )
        infos.append(dict(info_reply))
        dbsize += int(dbsize_reply)
    info = merge_info(infos)
    counts, exact = yield from _sample_counts(core, nodes, dbsize)
    stats = core.stats
    observations = Observations(
        hits=stats.hits,
        misses=stats.misses,
        p95_ms=stats.latency.percentile_ms(95),
        info=info,
        evictions_per_hour=_evictions_per_hour(core, info),
        pool_in_use=None,  # one pool per node: the cluster client does not report usage
        pool_cap=None,
    )
    metrics = evaluate(observations, core.config.health)
    server = {name: info[name] for name in _SERVER_FIELDS if name in info}
    server["dbsize"] = dbsize
    server["cluster_primaries"] = len(nodes)
    return HealthReport(
        verdict=overall(metrics),
        metrics=metrics,
        key_counts=tuple(KeyCount(ns, n, exact) for ns, n in sorted(counts.items())),
        server=server,
        stats=stats.as_dict(),
    )


def _sample_counts(
    core: CacheCore, nodes: list[str], dbsize: int
) -> Step[tuple[dict[str, int], bool]]:
    ks = core.keyspace
    counts = dict.fromkeys(ks.registry.names, 0)
    match = ks.scope_match()
    budget = max(1, core.config.health_scan_calls // max(1, len(nodes)))
    calls = 0
    exact = True
    for node in nodes:
        cursor: Any = 0
        for _ in range(budget):
            (reply,) = yield Batch(
                [("SCAN", cursor, "MATCH", match, "COUNT", core.config.scan_count)],
                operation=f"SCAN MATCH {match} on {node}",
                node=node,
            )
            cursor, keys = reply
            calls += 1
            count_namespaces(ks, keys, counts)
            if int(cursor) == 0:
                break
        else:
            exact = False
    if exact:
        return counts, True
    visited = calls * core.config.scan_count
    scale = max(1.0, dbsize / visited) if visited else 1.0
    return {ns: round(n * scale) for ns, n in counts.items()}, False
