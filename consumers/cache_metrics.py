"""The cache core's health as metrics: hit rate, memory, evictions, with the audit's verdicts.

:meth:`cachebus.core.Cache.health` judges each metric against the audit's thresholds (hit rate
>= 80% ok, < 70% alert; memory < 70% ok, > 80% alert, > 90% critical; evictions > 1000/h
alert; ...). Here each report becomes gauges: the raw values, a *level* per metric (0 unknown,
1 ok, 2 warn, 3 alert, 4 critical) so an alert rule is ``level >= 3``, and the thresholds
themselves, so dashboards draw the lines the verdicts use. A sidecar's own cache object only
invalidates, so its client-side hit rate stays unknown; the *server's* hit rate (INFO
``keyspace_hits``/``keyspace_misses``) is judged with the same thresholds.

A gauge callback cannot await Redis: call :meth:`CacheHealthMetrics.refresh` periodically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from cachebus.contracts import semconv as sc
from cachebus.core import Cache, HealthReport, HealthThresholds
from cachebus.core.health import Metric, Verdict

__all__ = ["LEVELS", "CacheHealthMetrics", "server_hit_rate"]

#: The numeric level exported for each verdict.
LEVELS = {
    Verdict.UNKNOWN: 0,
    Verdict.OK: 1,
    Verdict.WARN: 2,
    Verdict.ALERT: 3,
    Verdict.CRITICAL: 4,
}
_METRIC = "cachebus.metric"
_LEVEL = "cachebus.level"


def server_hit_rate(report: HealthReport, thresholds: HealthThresholds) -> Metric:
    """The server-wide hit rate from INFO, judged like the client's."""
    hits = int(report.server.get("keyspace_hits", 0) or 0)
    misses = int(report.server.get("keyspace_misses", 0) or 0)
    reads = hits + misses
    if reads < thresholds.hit_rate_min_reads:
        return Metric("server_hit_rate", None, "ratio", Verdict.UNKNOWN, f"only {reads} reads")
    rate = hits / reads
    if rate < thresholds.hit_rate_alert:
        verdict = Verdict.ALERT
    else:
        verdict = Verdict.OK if rate >= thresholds.hit_rate_ok else Verdict.WARN
    return Metric("server_hit_rate", rate, "ratio", verdict, f"{hits}/{reads} server reads")


class CacheHealthMetrics:
    """Gauges fed by the latest :class:`cachebus.core.HealthReport` of one cache."""

    def __init__(
        self,
        scope: str,
        *,
        thresholds: HealthThresholds | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(sc.METER_CACHE, meter_provider=meter_provider)
        self._base: dict[str, Any] = {"cachebus.scope": scope}
        self._thresholds = thresholds or HealthThresholds()
        self._report: HealthReport | None = None
        self._metrics: tuple[Metric, ...] = ()
        gauges: list[tuple[str, str, str, Any]] = [
            ("cachebus.cache.hit_ratio", "1", "Hit ratio (0-1), client and server", self._rates),
            ("cachebus.cache.memory.utilization", "1", "used_memory / maxmemory", self._memory),
            ("cachebus.cache.memory.used", "By", "Redis used_memory", self._used),
            ("cachebus.cache.evictions.rate", "{key}/h", "Evicted keys per hour", self._evictions),
            ("cachebus.cache.latency.p95", "s", "p95 of this cache's round trips", self._p95),
            ("cachebus.cache.health.level", "1", "0 unknown 1 ok 2 warn 3 alert 4 critical",
             self._levels),
            ("cachebus.cache.health.threshold", "1", "The audit's thresholds", self._limits),
        ]  # fmt: skip
        for name, unit, description, callback in gauges:
            meter.create_observable_gauge(name, [callback], unit=unit, description=description)
        meter.create_observable_counter(
            "cachebus.cache.evicted_keys",
            [self._evicted],
            unit="{key}",
            description="Keys the cache's Redis evicted since it started (INFO evicted_keys)",
        )

    @classmethod
    def for_cache(
        cls, cache: Cache, *, meter_provider: MeterProvider | None = None
    ) -> CacheHealthMetrics:
        return cls(
            cache.keyspace.scope,
            thresholds=cache.config.health,
            meter_provider=meter_provider,
        )

    def update(self, report: HealthReport) -> None:
        self._report = report
        self._metrics = (*report.metrics, server_hit_rate(report, self._thresholds))

    async def refresh(self, cache: Cache) -> HealthReport:
        """Take a new report from ``cache`` (INFO, DBSIZE, a bounded SCAN sample)."""
        report = await cache.health()
        self.update(report)
        return report

    # ---- callbacks -------------------------------------------------------------------------
    def _value(self, name: str) -> float | None:
        for metric in self._metrics:
            if metric.name == name:
                return metric.value
        return None

    def _one(self, name: str, scale: float = 1.0) -> list[Observation]:
        value = self._value(name)
        return [] if value is None else [Observation(value * scale, self._base)]

    def _rates(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for name, source in (("hit_rate", "client"), ("server_hit_rate", "server")):
            value = self._value(name)
            if value is not None:
                out.append(Observation(value, {**self._base, sc.ATTR_SOURCE: source}))
        return out

    def _memory(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one("memory")

    def _evictions(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one("evictions")

    def _p95(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._one("latency_p95", 0.001)

    def _server(self, field: str) -> list[Observation]:
        if self._report is None or field not in self._report.server:
            return []
        return [Observation(int(self._report.server[field]), self._base)]

    def _used(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._server("used_memory")

    def _evicted(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._server("evicted_keys")

    def _levels(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(LEVELS[m.verdict], {**self._base, _METRIC: m.name}) for m in self._metrics
        ]

    def _limits(self, options: CallbackOptions) -> Iterable[Observation]:
        t = self._thresholds
        rows = [
            ("hit_rate", "ok", t.hit_rate_ok),
            ("hit_rate", "alert", t.hit_rate_alert),
            ("memory", "ok", t.memory_ok),
            ("memory", "alert", t.memory_alert),
            ("memory", "critical", t.memory_critical),
            ("evictions", "alert", t.evictions_per_hour_alert),
            ("latency_p95", "ok", t.p95_ok_ms / 1000.0),
            ("latency_p95", "alert", t.p95_alert_ms / 1000.0),
        ]
        return [
            Observation(value, {**self._base, _METRIC: metric, _LEVEL: level})
            for metric, level, value in rows
        ]
