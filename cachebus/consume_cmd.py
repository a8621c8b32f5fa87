"""``cachebus consume``: run a service's consumer (a sidecar for any service).

Signals live here and only here: the first SIGTERM or SIGINT stops gracefully (finish and ack
the batch in flight, within the grace period); a second one exits at once (its entries stay
pending and are replayed by the next start, so nothing is lost either way).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

import redis.asyncio
import typer

from cachebus.health_server import HealthServer
from cachebus.settings import CachebusSettings
from cachecore import Cache
from cachecore._io import AsyncClient
from cachecore.connection import RedisSettings, create_async_cluster, create_async_pool
from consumers import Consumer, ConsumerConfig, PartitionedConsumer, RedisCacheSink
from contracts.errors import CachebusError, ConfigError
from contracts.keys import KeySpace, StreamKeys

__all__ = ["EXIT_CONFIG", "EXIT_KILLED", "EXIT_OK", "consume"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_KILLED = 130

log = logging.getLogger("cachebus.cli")


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


async def serve(settings: CachebusSettings) -> int:
    config, stream_settings, cache_settings = _build(settings)
    stream_client, stream_pool = _client(stream_settings)
    cache_client, cache_pool = (
        (stream_client, None) if cache_settings == stream_settings else _client(cache_settings)
    )
    cache = Cache(cache_client, KeySpace(prefix=settings.prefix, scope=config.group))
    keys = StreamKeys(settings.prefix, partitions=settings.partitions)
    consumer: Consumer | PartitionedConsumer
    if settings.partitions > 1:
        consumer = PartitionedConsumer(
            stream_client, config, [RedisCacheSink(cache)], keys=keys,
            where=stream_settings.redacted_url,
        )  # fmt: skip
    else:
        consumer = Consumer(
            stream_client, config, [RedisCacheSink(cache)], keys=keys,
            where=stream_settings.redacted_url,
        )  # fmt: skip
    health = None
    if settings.health_port:
        health = await HealthServer(
            consumer.health, host=settings.health_host, port=settings.health_port
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
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        await consumer.stop()
        await runner  # surfaces a crash of run()
    finally:
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if health is not None:
            await health.close()
        await stream_client.aclose()
        if cache_client is not stream_client:
            await cache_client.aclose()
        for pool in (stream_pool, cache_pool):
            if pool is not None:
                await pool.aclose()
    log.info("consumer %s stopped: %s", config.consumer, consumer.stats.as_dict())
    return EXIT_OK


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
    health_port: int = typer.Option(
        None, help="Serve /healthz /readyz /metrics here. (env CACHEBUS_HEALTH_PORT)"
    ),
    retention: bool = typer.Option(
        None, help="Trim what every group acked. (env CACHEBUS_RETENTION)"
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
        "consumer_name": consumer_name, "health_port": health_port, "retention": retention,
        "partitions": partitions, "cluster": cluster,
    }  # fmt: skip
    try:
        settings = CachebusSettings(**{k: v for k, v in overrides.items() if v is not None})
        code = asyncio.run(serve(settings))
    except CachebusError as exc:
        typer.echo(f"cachebus consume: {exc}", err=True)
        code = EXIT_CONFIG if isinstance(exc, ConfigError | ValueError) else 1
    sys.exit(code)
