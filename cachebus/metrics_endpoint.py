"""``/metrics`` of ``cachebus consume``: the sidecar's OpenTelemetry metrics as Prometheus text.

The library only uses the OpenTelemetry metrics *API*; this module (CLI only) builds an SDK
``MeterProvider`` whose Prometheus reader renders into a private ``prometheus_client``
registry (never the global one, so two sidecars in one process, or tests, do not collide).
Both come from the ``otel`` extra: ``pip install 'cachebus[otel]'``.

:class:`MetricsSampler` feeds the gauges that need a Redis round trip (a gauge callback
cannot await): the group's oldest pending entry (XPENDING), the group's counters kept in Redis
(per member, surviving crashes) and the cache's health report (hit rate, memory, evictions,
judged with the audit's thresholds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cachebus.consumers import CacheHealthMetrics, ConsumerMetrics
from cachebus.consumers.counters import GroupCounters, parse_counters
from cachebus.consumers.metrics import pending_summary
from cachebus.contracts.errors import BackendError, ConfigError
from cachebus.core import Cache
from cachebus.core._io import AsyncClient
from cachebus.core._tasks import cancel_and_wait
from cachebus.core.connection import map_redis_errors

__all__ = ["MetricsSampler", "PrometheusEndpoint"]

log = logging.getLogger("cachebus.metrics")

_INSTALL_HINT = "Prometheus metrics need the otel extra: pip install 'cachebus[otel]'"


class PrometheusEndpoint:
    """An SDK meter provider and the Prometheus text of everything it measured."""

    def __init__(self, *, service: str, instance: str) -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        except ImportError as exc:  # the otel extra is optional
            raise ConfigError(f"{_INSTALL_HINT} ({exc.name} is missing)") from None
        self.registry = CollectorRegistry()
        self._reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        resource = Resource.create(
            {
                "service.name": "cachebus-consume",
                "service.instance.id": instance,
                "cachebus.service": service,
            }
        )
        self.meter_provider = MeterProvider(metric_readers=[self._reader], resource=resource)
        self._generate = generate_latest
        self.content_type: str = CONTENT_TYPE_LATEST

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a ``/metrics`` reply."""
        return self._generate(self.registry), self.content_type

    def shutdown(self) -> None:
        self.meter_provider.shutdown()


class MetricsSampler:
    """Samples XPENDING and the cache's health every ``interval`` seconds, in the background."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        stream_key: str | None,
        group: str,
        consumer_metrics: ConsumerMetrics,
        cache: Cache | None = None,
        cache_metrics: CacheHealthMetrics | None = None,
        interval: float = 15.0,
        where: str = "Redis",
        counters_keys: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._counters_keys = counters_keys
        self._stream_key = stream_key
        self._group = group
        self._consumer_metrics = consumer_metrics
        self._cache = cache
        self._cache_metrics = cache_metrics
        self._interval = max(interval, 0.1)
        self._where = where
        self._task: asyncio.Task[Any] | None = None
        #: Samples that failed (Redis unreachable, group missing): the gauges keep their last value.
        self.failures = 0

    async def sample(self) -> None:
        """One round of sampling; a failure is logged and counted, never raised.

        Without a ``stream_key`` (a partitioned stream) only the cache is sampled.
        """
        if self._stream_key is not None:
            try:
                summary = await pending_summary(
                    self._client,  # type: ignore[arg-type]
                    self._stream_key,
                    self._group,
                    self._where,
                )
                self._consumer_metrics.observe_pending(summary)
            except BackendError as exc:  # NOGROUP before the group exists, or Redis down
                self.failures += 1
                log.debug("XPENDING sample failed: %s", exc)
        if self._counters_keys:
            try:
                await self._sample_counters()
            except BackendError as exc:
                self.failures += 1
                log.debug("counters sample failed: %s", exc)
        if self._cache is not None and self._cache_metrics is not None:
            try:
                await self._cache_metrics.refresh(self._cache)
            except BackendError as exc:
                self.failures += 1
                log.debug("cache health sample failed: %s", exc)

    async def _sample_counters(self) -> None:
        merged: dict[str, dict[str, int]] = {}
        for key in self._counters_keys:  # one hash per partition: summed per member
            with map_redis_errors(f"HGETALL {key}", self._where):
                raw = await self._client.hgetall(key)
            for member, counts in parse_counters(raw).members.items():
                mine = merged.setdefault(member, {})
                for name, value in counts.items():
                    mine[name] = mine.get(name, 0) + value
        self._consumer_metrics.observe_counters(GroupCounters(merged))

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self._interval)

    def start(self) -> MetricsSampler:
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
