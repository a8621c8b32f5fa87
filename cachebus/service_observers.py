"""What the composition root observes its consumers with: spans, metrics, Prometheus.

Spans go through the given tracer provider (or the global one: a no-op until an SDK is set up).
Metrics go to the given meter provider; without one, and with a probe port, to a private
Prometheus endpoint (the ``otel`` extra; without it, one warning and no ``/metrics``), whose
sampler feeds the gauges that need Redis (XPENDING, the counters kept in Redis, the cache's
health).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from cachebus.consumers.cache_metrics import CacheHealthMetrics
from cachebus.consumers.config import ConsumerConfig
from cachebus.consumers.metrics import ConsumerMetrics
from cachebus.consumers.observe import CompositeObserver, ConsumerObserver
from cachebus.consumers.tracing import TracingObserver
from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import StreamKeys
from cachebus.core._io import AsyncClient
from cachebus.core.cache import Cache
from cachebus.core.connection import RedisSettings
from cachebus.metrics_endpoint import MetricsSampler, PrometheusEndpoint
from cachebus.settings import CachebusSettings

__all__ = ["Observability", "observe"]

log = logging.getLogger("cachebus.service")


@dataclass
class Observability:
    """The consumers' observer, and the Prometheus endpoint and sampler when there is one."""

    observer: ConsumerObserver | None = None
    endpoint: PrometheusEndpoint | None = None
    sampler: MetricsSampler | None = None

    async def close(self) -> None:
        if self.sampler is not None:
            await self.sampler.close()
            self.sampler = None
        if self.endpoint is not None:
            self.endpoint.shutdown()
            self.endpoint = None


def observe(
    settings: CachebusSettings,
    config: ConsumerConfig,
    keys: StreamKeys,
    stream: RedisSettings,
    *,
    client: AsyncClient,
    cache: Cache,
    extra: Sequence[ConsumerObserver] = (),
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Observability:
    """The observers of ``config``'s consumers on ``keys`` (the whole layout, or a partition)."""
    wired = Observability()
    observers: list[ConsumerObserver] = []
    if settings.traces:
        observers.append(
            TracingObserver.for_consumer(
                config, keys=keys, server=stream.address, tracer_provider=tracer_provider
            )
        )
    if settings.metrics:
        provider = meter_provider
        if provider is None and settings.health_port:
            try:
                wired.endpoint = PrometheusEndpoint(service=config.group, instance=config.consumer)
                provider = wired.endpoint.meter_provider
            except ConfigError as exc:  # invalidations matter more than their metrics
                log.warning("no /metrics: %s", exc)
        metrics = ConsumerMetrics.for_consumer(config, keys=keys, meter_provider=provider)
        observers.append(metrics)
        if wired.endpoint is not None:
            sampled = (client, cache, metrics, wired.endpoint.meter_provider)
            wired.sampler = _sampler(settings, config, keys, stream, *sampled).start()
    observers += extra
    if len(observers) > 1:
        wired.observer = CompositeObserver(*observers)
    elif observers:
        wired.observer = observers[0]
    return wired


def _sampler(
    settings: CachebusSettings,
    config: ConsumerConfig,
    keys: StreamKeys,
    stream: RedisSettings,
    client: AsyncClient,
    cache: Cache,
    metrics: ConsumerMetrics,
    provider: MeterProvider,
) -> MetricsSampler:
    single = keys.partitions == 1 or keys.partition is not None
    parts = (keys,) if single else keys.all_partitions()
    return MetricsSampler(
        client=client,
        # A partitioned stream has no single key to sample XPENDING on: its gauges come from
        # the reads alone.
        stream_key=keys.stream(config.stream) if single else None,
        group=config.group,
        consumer_metrics=metrics,
        cache=cache,
        cache_metrics=CacheHealthMetrics.for_cache(cache, meter_provider=provider),
        interval=settings.metrics_interval_s,
        where=stream.redacted_url,
        counters_keys=tuple(p.counters(config.stream, config.group) for p in parts),
    )
