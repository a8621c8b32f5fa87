"""The ``health()`` step: INFO, DBSIZE and a bounded SCAN sample, judged by :mod:`health`."""

from __future__ import annotations

import time
from typing import Any

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeySpace
from cachebus.core._core import CacheCore
from cachebus.core._io import Batch, Step
from cachebus.core.health import HealthReport, KeyCount, Observations, evaluate, overall

__all__ = ["count_namespaces", "health_step", "pool_usage"]

_SERVER_FIELDS = (
    "redis_version",
    "run_id",
    "uptime_in_seconds",
    "used_memory",
    "maxmemory",
    "maxmemory_policy",
    "total_system_memory",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
    "connected_clients",
    "maxclients",
)


def pool_usage(pool: Any) -> tuple[int | None, int | None]:
    """``(connections in use, max_connections)`` of a redis-py pool, when it tells."""
    cap = getattr(pool, "max_connections", None)
    try:
        counts = pool.get_connection_count()
    except (AttributeError, NotImplementedError, TypeError):
        return None, cap
    in_use = None
    for count, attributes in counts or ():
        if str(attributes.get("db.client.connection.state", "")).lower() == "used":
            in_use = int(count)
    return in_use, cap


def health_step(core: CacheCore, in_use: int | None, cap: int | None) -> Step[HealthReport]:
    return _health(core, in_use, cap)


def _health(core: CacheCore, in_use: int | None, cap: int | None) -> Step[HealthReport]:
    info_reply, dbsize_reply = yield Batch(
        [("INFO", "memory", "stats", "clients", "server"), ("DBSIZE",)], operation="INFO"
    )
    info: dict[str, Any] = dict(info_reply)
    dbsize = int(dbsize_reply)
    counts, exact = yield from _sample_counts(core, dbsize)
    stats = core.stats
    observations = Observations(
        hits=stats.hits,
        misses=stats.misses,
        p95_ms=stats.latency.percentile_ms(95),
        info=info,
        evictions_per_hour=_evictions_per_hour(core, info),
        pool_in_use=in_use,
        pool_cap=cap,
    )
    metrics = evaluate(observations, core.config.health)
    server = {name: info[name] for name in _SERVER_FIELDS if name in info}
    server["dbsize"] = dbsize
    return HealthReport(
        verdict=overall(metrics),
        metrics=metrics,
        key_counts=tuple(KeyCount(ns, n, exact) for ns, n in sorted(counts.items())),
        server=server,
        stats=stats.as_dict(),
    )


def _sample_counts(core: CacheCore, dbsize: int) -> Step[tuple[dict[str, int], bool]]:
    """Keys per namespace: exact if the SCAN finished within budget, else extrapolated."""
    ks = core.keyspace
    counts = dict.fromkeys(ks.registry.names, 0)
    match = ks.scope_match()
    cursor = 0
    calls = 0
    while calls < core.config.health_scan_calls:
        (reply,) = yield Batch(
            [("SCAN", cursor, "MATCH", match, "COUNT", core.config.scan_count)],
            operation=f"SCAN MATCH {match}",
        )
        cursor, keys = reply
        calls += 1
        count_namespaces(ks, keys, counts)
        if int(cursor) == 0:
            return counts, True
    # SCAN visits about COUNT slots per call: scale by the share of the keyspace visited.
    visited = calls * core.config.scan_count
    scale = max(1.0, dbsize / visited) if visited else 1.0
    return {ns: round(n * scale) for ns, n in counts.items()}, False


def count_namespaces(ks: KeySpace, keys: Any, counts: dict[str, int]) -> None:
    """Add the keys SCAN returned to ``counts`` by namespace; reserved or foreign keys skipped."""
    for raw in keys:
        try:
            ref = ks.parse(raw.decode() if isinstance(raw, bytes) else raw)
        except (ContractError, UnicodeDecodeError):
            continue  # generations, leases, sync markers, or not ours
        counts[ref.namespace] += 1


def _evictions_per_hour(core: CacheCore, info: dict[str, Any]) -> float | None:
    if "evicted_keys" not in info:
        return None
    evicted = int(info["evicted_keys"])
    now = time.monotonic()
    previous = core.eviction_sample
    core.eviction_sample = (evicted, now)
    if previous is not None and evicted >= previous[0] and now - previous[1] >= 1.0:
        return (evicted - previous[0]) / (now - previous[1]) * 3600.0
    uptime = float(info.get("uptime_in_seconds", 0))
    # First look (or a restart): the average since the server started.
    return evicted / max(uptime, 1.0) * 3600.0
