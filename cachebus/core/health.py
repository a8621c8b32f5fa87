"""Cache health: the audit's metrics, each with a verdict from the audit's thresholds.

The audit ("Métriques à surveiller") sets: hit rate >= 80% ok, < 70% alert; memory
< 70% of maxmemory ok, > 80% alert, > 90% critical; evictions > 1000/h alert; p95 latency
< 5 ms ok, > 10 ms alert; connections < 50% of the cap ok, > 80% alert. Values between "ok"
and "alert" are ``warn``; a metric without data (no reads yet) is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["HealthReport", "HealthThresholds", "KeyCount", "Metric", "Verdict", "evaluate"]


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


_RANK = {Verdict.UNKNOWN: 0, Verdict.OK: 1, Verdict.WARN: 2, Verdict.ALERT: 3, Verdict.CRITICAL: 4}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    hit_rate_ok: float = 0.80
    hit_rate_alert: float = 0.70
    #: Below this many reads the hit rate is ``unknown`` (too few to judge).
    hit_rate_min_reads: int = 100
    memory_ok: float = 0.70
    memory_alert: float = 0.80
    memory_critical: float = 0.90
    evictions_per_hour_alert: float = 1000.0
    p95_ok_ms: float = 5.0
    p95_alert_ms: float = 10.0
    connections_ok: float = 0.50
    connections_alert: float = 0.80


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    value: float | None
    unit: str
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KeyCount:
    """Keys of one namespace in this scope: exact when the sample covered the whole keyspace."""

    namespace: str
    count: int
    exact: bool


@dataclass(frozen=True, slots=True)
class HealthReport:
    verdict: Verdict
    metrics: tuple[Metric, ...]
    key_counts: tuple[KeyCount, ...]
    server: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, int] = field(default_factory=dict)

    def metric(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "metrics": {
                m.name: {
                    "value": m.value,
                    "unit": m.unit,
                    "verdict": m.verdict.value,
                    "detail": m.detail,
                }
                for m in self.metrics
            },
            "key_counts": {
                k.namespace: {"count": k.count, "exact": k.exact} for k in self.key_counts
            },
            "server": dict(self.server),
            "stats": dict(self.stats),
        }


def _higher_is_worse(
    value: float, ok: float, alert: float, critical: float | None = None
) -> Verdict:
    if critical is not None and value > critical:
        return Verdict.CRITICAL
    if value > alert:
        return Verdict.ALERT
    return Verdict.OK if value < ok else Verdict.WARN


def _ratio(used: float, cap: float) -> float | None:
    return used / cap if cap > 0 else None


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything :func:`evaluate` judges, gathered by the cache in one ``health()`` call."""

    hits: int
    misses: int
    p95_ms: float | None
    info: Mapping[str, Any]
    evictions_per_hour: float | None
    pool_in_use: int | None
    pool_cap: int | None


def evaluate(obs: Observations, t: HealthThresholds) -> tuple[Metric, ...]:
    metrics: list[Metric] = []
    reads = obs.hits + obs.misses
    if reads >= t.hit_rate_min_reads:
        rate = obs.hits / reads
        verdict = (
            Verdict.ALERT
            if rate < t.hit_rate_alert
            else (Verdict.OK if rate >= t.hit_rate_ok else Verdict.WARN)
        )
        metrics.append(Metric("hit_rate", rate, "ratio", verdict, f"{obs.hits}/{reads} reads"))
    else:
        metrics.append(
            Metric("hit_rate", None, "ratio", Verdict.UNKNOWN, f"only {reads} reads so far")
        )

    used = float(obs.info.get("used_memory", 0))
    maxmemory = float(obs.info.get("maxmemory", 0))
    detail = "of maxmemory"
    if maxmemory <= 0:
        # No cap: Redis grows until the host runs out; judge against the host's memory.
        maxmemory = float(obs.info.get("total_system_memory", 0))
        detail = "of system memory: no maxmemory set, so nothing is evicted before the OOM killer"
    memory = _ratio(used, maxmemory)
    metrics.append(
        Metric(
            "memory",
            memory,
            "ratio",
            Verdict.UNKNOWN
            if memory is None
            else _higher_is_worse(memory, t.memory_ok, t.memory_alert, t.memory_critical),
            detail,
        )
    )

    if obs.evictions_per_hour is None:
        metrics.append(Metric("evictions", None, "keys/h", Verdict.UNKNOWN))
    else:
        verdict = (
            Verdict.ALERT if obs.evictions_per_hour > t.evictions_per_hour_alert else Verdict.OK
        )
        metrics.append(
            Metric("evictions", obs.evictions_per_hour, "keys/h", verdict, "evicted_keys rate")
        )

    if obs.p95_ms is None:
        metrics.append(Metric("latency_p95", None, "ms", Verdict.UNKNOWN, "no round trips yet"))
    else:
        verdict = _higher_is_worse(obs.p95_ms, t.p95_ok_ms, t.p95_alert_ms)
        metrics.append(Metric("latency_p95", obs.p95_ms, "ms", verdict, "our round trips"))

    clients = _ratio(
        float(obs.info.get("connected_clients", 0)), float(obs.info.get("maxclients", 0))
    )
    metrics.append(_connections("server_connections", clients, "connected_clients/maxclients", t))
    pool = (
        _ratio(float(obs.pool_in_use), float(obs.pool_cap))
        if obs.pool_in_use is not None and obs.pool_cap
        else None
    )
    metrics.append(_connections("pool_connections", pool, "in use / pool max_connections", t))
    return tuple(metrics)


def _connections(name: str, value: float | None, detail: str, t: HealthThresholds) -> Metric:
    if value is None:
        return Metric(name, None, "ratio", Verdict.UNKNOWN, detail)
    verdict = _higher_is_worse(value, t.connections_ok, t.connections_alert)
    return Metric(name, value, "ratio", verdict, detail)


def overall(metrics: Sequence[Metric]) -> Verdict:
    """The worst verdict; ``unknown`` only when nothing is known."""
    worst = Verdict.UNKNOWN
    for metric in metrics:
        if _RANK[metric.verdict] > _RANK[worst]:
            worst = metric.verdict
    return worst
