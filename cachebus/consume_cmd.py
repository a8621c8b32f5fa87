"""``cachebus consume``: run a service's consumer (a sidecar for any service).

Exit codes: 0 after a stop by signal, 2 for a configuration error (a bad setting, or Redis
refusing the credentials or an ACL right: ``AccessDenied``), 130 on a forced second signal.
No other reply of Redis ends the process: the consumer retries it (see
``cachebus.consumers.runtime``).

Signals live here and only here: the first SIGTERM or SIGINT stops gracefully (finish and ack
the batch in flight, within the grace period); a second one exits at once (its entries stay
pending and are replayed by the next start, so nothing is lost either way).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any

import redis.asyncio
import typer
from pydantic import ValidationError

from cachebus.consumers import (
    CacheHealthMetrics,
    CompositeObserver,
    Consumer,
    ConsumerConfig,
    ConsumerMetrics,
    ConsumerObserver,
    PartitionedConsumer,
    RedisCacheSink,
    TracingObserver,
)
from cachebus.contracts.errors import AccessDenied, CachebusError, ConfigError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, CacheConfig
from cachebus.core._io import AsyncClient
from cachebus.core.connection import RedisSettings, create_async_cluster, create_async_pool
from cachebus.health_server import HealthServer
from cachebus.metrics_endpoint import MetricsSampler, PrometheusEndpoint
from cachebus.settings import CachebusSettings

__all__ = ["EXIT_CONFIG", "EXIT_KILLED", "EXIT_OK", "consume"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_KILLED = 130

log = logging.getLogger("cachebus.cli")
_FREEZE_AFTER_S = 1.0


def _build(settings: CachebusSettings) -> tuple[ConsumerConfig, RedisSettings, RedisSettings]:
    if not settings.service:
        raise ConfigError("no service: pass --service NAME (or set CACHEBUS_SERVICE)")
    if not settings.namespaces:
        raise ConfigError("no namespaces: pass --namespaces a,b (or set CACHEBUS_NAMESPACES)")
    config = ConsumerConfig(
        stream=settings.stream,
        group=settings.service,
        consumer=settings.consumer_name or "",
        namespaces=frozenset(settings.namespaces),
        count=settings.count,
        block_ms=settings.block_ms,
        min_idle_ms=settings.min_idle_ms,
        max_deliveries=settings.max_deliveries,
        retention=settings.retention,
        max_stream_length=settings.max_stream_length,
        lag_budget=settings.lag_budget,
        max_staleness_s=settings.max_staleness_s,
    )
    socket_timeout = max(settings.socket_timeout, config.socket_timeout_floor)
    stream = RedisSettings.from_url(
        settings.stream_url(),
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        client_name=config.consumer,
        cluster=settings.cluster,
    )
    cache = RedisSettings.from_url(
        settings.cache_redis_url(),
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        cluster=settings.cluster,
    )
    return config, stream, cache


def _client(
    settings: RedisSettings,
) -> tuple[AsyncClient, redis.asyncio.BlockingConnectionPool | None]:
    if settings.cluster:
        return create_async_cluster(settings), None
    pool = create_async_pool(settings)
    return redis.asyncio.Redis(connection_pool=pool), pool


def _observability(
    settings: CachebusSettings,
    config: ConsumerConfig,
    keys: StreamKeys,
    stream_settings: RedisSettings,
    stream_client: AsyncClient,
    cache: Cache,
) -> tuple[list[ConsumerObserver], PrometheusEndpoint | None, MetricsSampler | None]:
    """Spans (global provider), and with a health port the /metrics endpoint and its sampler."""
    observers: list[ConsumerObserver] = []
    if settings.traces:
        observers.append(
            TracingObserver.for_consumer(config, keys=keys, server=stream_settings.address)
        )
    endpoint = sampler = None
    if settings.metrics and settings.health_port:
        try:
            endpoint = PrometheusEndpoint(service=config.group, instance=config.consumer)
        except ConfigError as exc:  # invalidations matter more than their metrics
            log.warning("no /metrics: %s", exc)
    if endpoint is not None:
        consumer_metrics = ConsumerMetrics.for_consumer(
            config, keys=keys, meter_provider=endpoint.meter_provider
        )
        observers.append(consumer_metrics)
        sampler = MetricsSampler(
            client=stream_client,
            # A partitioned stream has no single key to sample XPENDING on: its gauges come
            # from the reads alone.
            stream_key=keys.stream(config.stream) if settings.partitions == 1 else None,
            group=config.group,
            consumer_metrics=consumer_metrics,
            cache=cache,
            cache_metrics=CacheHealthMetrics.for_cache(
                cache, meter_provider=endpoint.meter_provider
            ),
            interval=settings.metrics_interval_s,
            where=stream_settings.redacted_url,
        ).start()
    return observers, endpoint, sampler


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


async def serve(settings: CachebusSettings) -> int:
    config, stream_settings, cache_settings = _build(settings)
    stream_client, stream_pool = _client(stream_settings)
    cache_client, cache_pool = (
        (stream_client, None) if cache_settings == stream_settings else _client(cache_settings)
    )
    cache = Cache(
        cache_client,
        KeySpace(prefix=settings.prefix, scope=config.group),
        # No circuit breaker on the invalidation path: the consumer retries with its own
        # backoff, and a breaker's cool-down would only delay invalidations after an outage.
        CacheConfig(max_deletes_per_second=settings.max_deletes_per_second, breaker=None),
    )
    keys = StreamKeys(settings.prefix, partitions=settings.partitions)
    observers, endpoint, sampler = _observability(
        settings, config, keys, stream_settings, stream_client, cache
    )
    observer = CompositeObserver(*observers) if len(observers) > 1 else next(iter(observers), None)
    sinks = [RedisCacheSink(cache, max_keys_per_pattern=config.max_keys_per_pattern)]
    consumer: Consumer | PartitionedConsumer
    if settings.partitions > 1:
        consumer = PartitionedConsumer(
            stream_client, config, sinks, keys=keys, observer=observer,
            where=stream_settings.redacted_url,
        )  # fmt: skip
    else:
        consumer = Consumer(
            stream_client, config, sinks, keys=keys, observer=observer,
            where=stream_settings.redacted_url,
        )  # fmt: skip
    health = None
    if settings.health_port:
        health = await HealthServer(
            consumer.health,
            host=settings.health_host,
            port=settings.health_port,
            metrics=endpoint.render if endpoint is not None else None,
        ).start()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping consumer %s (signal again to force)", config.consumer)
            stop.set()
        else:
            log.warning("forced exit: pending entries will be replayed at the next start")
            os._exit(EXIT_KILLED)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    log.info(
        "consuming %s as %s/%s into scope %s:%s (namespaces %s) from %s",
        config.stream,
        config.group,
        config.consumer,
        settings.prefix,
        config.group,
        ",".join(sorted(config.namespaces)),
        stream_settings.redacted_url,
    )
    runner = asyncio.ensure_future(consumer.run())
    stopper = asyncio.ensure_future(stop.wait())
    # What is allocated by then lives as long as the process: keep it out of GC passes. Once
    # the first read is on its way, not before: a full collection takes tens of milliseconds.
    freeze = loop.call_later(_FREEZE_AFTER_S, _freeze_heap)
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        await consumer.stop()
        await _surface(runner)
    finally:
        freeze.cancel()
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if health is not None:
            await health.close()
        if sampler is not None:
            await sampler.close()
        if endpoint is not None:
            endpoint.shutdown()
        await stream_client.aclose()
        if cache_client is not stream_client:
            await cache_client.aclose()
        for pool in (stream_pool, cache_pool):
            if pool is not None:
                await pool.aclose()
    log.info("consumer %s stopped: %s", config.consumer, consumer.stats.as_dict())
    return EXIT_OK


async def _surface(runner: asyncio.Future[None]) -> None:
    """Await ``run()``: its crash surfaces, and an AccessDenied of one partition's member (in
    the ExceptionGroup of a partitioned consumer) surfaces as itself, for one clear line."""
    try:
        await runner
    except BaseExceptionGroup as group:
        denied = group.subgroup(AccessDenied)
        while denied is not None:
            first = denied.exceptions[0]
            if isinstance(first, AccessDenied):
                raise first from None
            denied = first if isinstance(first, BaseExceptionGroup) else None
        raise


def consume(
    service: str = typer.Option(
        None, help="The service: its consumer group and cache scope. (env CACHEBUS_SERVICE)"
    ),
    namespaces: str = typer.Option(
        None, help="Comma-separated namespaces it caches. (env CACHEBUS_NAMESPACES)"
    ),
    redis_url: str = typer.Option(None, help="Redis of the stream. (env CACHEBUS_REDIS_URL)"),
    cache_url: str = typer.Option(
        None, help="Redis of the cache (default: the stream's). (env CACHEBUS_CACHE_URL)"
    ),
    stream: str = typer.Option(None, help="Stream name. (env CACHEBUS_STREAM, default inval)"),
    prefix: str = typer.Option(None, help="Key prefix. (env CACHEBUS_PREFIX, default cb)"),
    consumer_name: str = typer.Option(
        None, "--consumer", help="Stable member name. (env CACHEBUS_CONSUMER_NAME)"
    ),
    count: int = typer.Option(None, help="Entries per read. (env CACHEBUS_COUNT)"),
    block_ms: int = typer.Option(None, help="Read block time, ms. (env CACHEBUS_BLOCK_MS)"),
    min_idle_ms: int = typer.Option(
        None, help="Claim entries idle this long, ms. (env CACHEBUS_MIN_IDLE_MS)"
    ),
    max_deliveries: int = typer.Option(
        None, help="Dead-letter after this many failures. (env CACHEBUS_MAX_DELIVERIES)"
    ),
    retention: bool = typer.Option(
        None, help="Trim what every group acked. (env CACHEBUS_RETENTION)"
    ),
    max_stream_length: int = typer.Option(
        None, help="Hard cap on the stream length. (env CACHEBUS_MAX_STREAM_LENGTH)"
    ),
    lag_budget: int = typer.Option(
        None, help="Not ready above this lag. (env CACHEBUS_LAG_BUDGET)"
    ),
    max_staleness_s: float = typer.Option(
        None, help="Not ready after this long disconnected. (env CACHEBUS_MAX_STALENESS_S)"
    ),
    health_port: int = typer.Option(
        None, help="Serve /healthz /readyz /metrics here. (env CACHEBUS_HEALTH_PORT)"
    ),
    health_host: str = typer.Option(
        None, help="Address of the probe server. (env CACHEBUS_HEALTH_HOST)"
    ),
    socket_timeout: float = typer.Option(
        None, help="Redis socket timeout, s. (env CACHEBUS_SOCKET_TIMEOUT)"
    ),
    connect_timeout: float = typer.Option(
        None, help="Redis connect timeout, s. (env CACHEBUS_CONNECT_TIMEOUT)"
    ),
    metrics: bool = typer.Option(
        None, help="Prometheus /metrics on the health port. (env CACHEBUS_METRICS)"
    ),
    metrics_interval_s: float = typer.Option(
        None, help="XPENDING/cache health sampling, s. (env CACHEBUS_METRICS_INTERVAL_S)"
    ),
    traces: bool = typer.Option(
        None, help="Consumer spans via the global tracer provider. (env CACHEBUS_TRACES)"
    ),
    max_deletes_per_second: float = typer.Option(
        None, help="Pace UNLINKs to at most this rate. (env CACHEBUS_MAX_DELETES_PER_SECOND)"
    ),
    partitions: int = typer.Option(
        None, help="Partitions of the stream, one consumer each. (env CACHEBUS_PARTITIONS)"
    ),
    cluster: bool = typer.Option(
        None, help="The URLs name a Redis Cluster node. (env CACHEBUS_CLUSTER)"
    ),
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Run the consumer of one service: its group, its cache scope, until SIGTERM."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides: dict[str, Any] = {
        "service": service, "namespaces": namespaces, "redis_url": redis_url,
        "cache_url": cache_url, "stream": stream, "prefix": prefix,
        "consumer_name": consumer_name, "count": count, "block_ms": block_ms,
        "min_idle_ms": min_idle_ms, "max_deliveries": max_deliveries, "retention": retention,
        "max_stream_length": max_stream_length, "lag_budget": lag_budget,
        "max_staleness_s": max_staleness_s, "health_port": health_port,
        "health_host": health_host, "socket_timeout": socket_timeout,
        "connect_timeout": connect_timeout, "metrics": metrics,
        "metrics_interval_s": metrics_interval_s, "traces": traces,
        "max_deletes_per_second": max_deletes_per_second,
        "partitions": partitions, "cluster": cluster,
    }  # fmt: skip
    try:
        settings = CachebusSettings(**{k: v for k, v in overrides.items() if v is not None})
        code = asyncio.run(serve(settings))
    except ValidationError as exc:  # a setting from the environment that does not parse
        typer.echo(f"cachebus consume: invalid setting: {exc}", err=True)
        code = EXIT_CONFIG
    except CachebusError as exc:
        typer.echo(f"cachebus consume: {exc}", err=True)
        # A refused password or ACL right is configuration too: fix it, do not restart-loop.
        code = EXIT_CONFIG if isinstance(exc, ConfigError | ValueError | AccessDenied) else 1
    sys.exit(code)
