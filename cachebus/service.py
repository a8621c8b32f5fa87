"""The composition root: one object that runs a service's consumers, wired from one settings
object (or a URL and the registry), the way arq's ``run_worker`` or saq's ``Worker`` do.

::

    registry = Registry.from_file("cachebus.toml")
    async with ConsumerService.from_url("redis://...", registry=registry, service="web"):
        ...  # the service runs; its cache scope is kept in sync

:class:`ConsumerService` checks everything when it is built (settings, namespaces against the
registry, timings, URLs, ports): a refused configuration raises there and has touched nothing.
:meth:`~ConsumerService.start` then creates and owns the clients and pools (redis-py's explicit
ownership: it created them, it closes them), the service's cache (its scope is the service),
the group consumer (over every partition, or one), an optional broadcast consumer keeping an
in-process L1, the observers (spans, metrics; Prometheus ``/metrics`` with the ``otel`` extra,
one warning without it) and the ``/healthz`` ``/readyz`` ``/metrics`` ``/status`` server when a
port is given (``/status``: the status page, see :mod:`cachebus.ops.status_page`).
:meth:`~ConsumerService.stop` is idempotent and stops in order: the consumers (each finishes
and acks its batch within ``grace_period_s``, is cancelled after, abandoned at
``hard_deadline_s``), then the probe server, the status page's poll, the sampler, the clients
and pools.

Signals are the caller's (``cachebus consume`` handles them): this module installs none.

It lives at the top of the package, beside the probe server and the Prometheus endpoint it
wires, because a composition root depends on every layer; ``cachebus.consumers`` stays a
runtime a library user can assemble by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from cachebus.consumers.broadcast import BroadcastConsumer
from cachebus.consumers.config import ConsumerConfig
from cachebus.consumers.observe import ConsumerObserver, ConsumerStats, Health
from cachebus.consumers.partitioned import PartitionedConsumer
from cachebus.consumers.runtime import Consumer
from cachebus.consumers.sinks import LocalCacheSink, RedisCacheSink, Sink
from cachebus.contracts.errors import ConfigError, ConsumerError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import AsyncClient
from cachebus.core._tasks import cancel_and_wait
from cachebus.core.cache import Cache
from cachebus.core.config import CacheConfig
from cachebus.core.connection import RedisSettings, create_async_cluster, create_async_pool
from cachebus.core.local import LocalCache
from cachebus.health_server import HealthServer
from cachebus.ops.status_history import HistoryObserver, StatusHistory
from cachebus.service_observers import Observability, observe
from cachebus.settings import CachebusSettings

if TYPE_CHECKING:
    from cachebus.ops.status_page import StatusPage

__all__ = ["ConsumerService"]

log = logging.getLogger("cachebus.service")

_NOT_STARTED = Health(False, False, False, False, False, None, None, ("not started",), 0.0)


class ConsumerService:
    """A service's consumers, their clients, cache, observers and probes: one per process."""

    def __init__(
        self,
        settings: CachebusSettings,
        *,
        registry: Registry | None = None,
        observers: Sequence[ConsumerObserver] = (),
        sinks: Sequence[Sink] = (),
        cache_config: CacheConfig | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if registry is not None:
            settings.use_registry(registry)
        self.settings = settings
        self.config: ConsumerConfig = settings.consumer_config()
        self.registry = settings.load_registry()
        self.keys = StreamKeys(settings.prefix, partitions=settings.partitions)
        self._part_keys = self.keys
        if settings.partition is not None:
            self._part_keys = self.keys.for_partition(settings.partition)  # checks the index
        self._broadcast = settings.broadcast_config(self.config) if settings.broadcast else None
        self.stream_settings, self.cache_settings = settings.redis_settings(self.config)
        # No circuit breaker on the invalidation path: the consumer retries with its own
        # backoff, and a breaker's cool-down would only delay invalidations after an outage.
        self.cache_config = cache_config or CacheConfig(
            max_deletes_per_second=settings.max_deletes_per_second, breaker=None
        )
        self.cache_config.check_against(self.registry)
        self._observers = tuple(observers)
        self._sinks = tuple(sinks)
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._state = "new"
        self._lock = asyncio.Lock()
        self._owned: list[Any] = []  # clients and pools, closed in reverse order
        self._tasks: list[asyncio.Task[None]] = []
        self._error: BaseException | None = None
        self._health_server: HealthServer | None = None
        #: What /status plots and lists (fed by this service's consumer; see status_page).
        self.history = StatusHistory()
        self._status_page: StatusPage | None = None
        self._observed = Observability()
        self.stream_client: AsyncClient | None = None
        self.cache_client: AsyncClient | None = None
        self.cache: Cache | None = None
        self.consumer: Consumer | PartitionedConsumer | None = None
        self.broadcast: BroadcastConsumer | None = None
        # The L1 exists from here on (empty, in memory), so reads can be wired before start();
        # it is filled only once the group has caught up (see _l1_fillable).
        self.local: LocalCache | None = None
        self._l1_warm = False
        if self._broadcast is not None:
            self.local = LocalCache(self.registry, maxsize=settings.local_maxsize)
            self.local.fill_gate = self._l1_fillable

    @classmethod
    def from_settings(
        cls, settings: CachebusSettings | None = None, **kwargs: Any
    ) -> ConsumerService:
        """From a settings object (default: the ``CACHEBUS_*`` environment alone)."""
        return cls(settings if settings is not None else CachebusSettings(), **kwargs)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        registry: Registry,
        service: str,
        namespaces: Sequence[str] = (),
        cache_url: str | None = None,
        settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ConsumerService:
        """The service's consumers on ``url``; ``settings`` are other :class:`CachebusSettings`
        fields (the rest from ``CACHEBUS_*`` variables, then defaults); ``kwargs`` as for the
        constructor (observers, sinks, providers)."""
        values: dict[str, Any] = {"redis_url": url, "service": service, **(settings or {})}
        if namespaces:
            values["namespaces"] = list(namespaces)
        if cache_url is not None:
            values["cache_url"] = cache_url
        return cls(CachebusSettings(**values), registry=registry, **kwargs)

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> ConsumerService:
        """Create the clients, cache, consumers and probes; start consuming."""
        async with self._lock:
            if self._state != "new":
                raise ConsumerError(f"this service was already started ({self._state})")
            self._state = "starting"
            try:
                await self._start()
            except BaseException:
                await self._close()
                self._state = "stopped"
                raise
            self._state = "running"
        return self

    async def _start(self) -> None:
        settings, config = self.settings, self.config
        self.stream_client = self._client(self.stream_settings)
        same = self.cache_settings.url == self.stream_settings.url
        self.cache_client = self.stream_client if same else self._client(self.cache_settings)
        scope = KeySpace(settings.prefix, config.group, registry=self.registry)
        self.cache = Cache(self.cache_client, scope, self.cache_config)
        self._observed = observe(
            settings, config, self._part_keys, self.stream_settings,
            client=self.stream_client, cache=self.cache, extra=self._extra_observers(),
            tracer_provider=self._tracer_provider, meter_provider=self._meter_provider,
        )  # fmt: skip
        observer = self._observed.observer
        sinks: list[Sink] = [
            RedisCacheSink(self.cache, max_keys_per_pattern=config.max_keys_per_pattern),
            *self._sinks,
        ]
        where = self.stream_settings.redacted_url
        if settings.partitions > 1 and settings.partition is None:
            self.consumer = PartitionedConsumer(
                self.stream_client, config, sinks, keys=self.keys, observer=observer,
                registry=self.registry, where=where,
            )  # fmt: skip
        else:
            self.consumer = Consumer(
                self.stream_client, config, sinks, keys=self._part_keys, observer=observer,
                registry=self.registry, where=where,
            )  # fmt: skip
        if self._broadcast is not None:
            assert isinstance(self.stream_client, redis.asyncio.Redis)  # not a cluster: checked
            assert self.local is not None
            # L2 before L1: an L1 is never refilled from an L2 that missed the event.
            sinks_l1: list[Sink] = [RedisCacheSink(self.cache), LocalCacheSink(self.local)]
            self.broadcast = BroadcastConsumer(
                self.stream_client, self._broadcast, sinks_l1, keys=self.keys, where=where
            )
        if settings.health_port:
            await self._serve_probes()
        self._tasks.append(asyncio.ensure_future(self.consumer.run()))
        if self.broadcast is not None:
            self._tasks.append(asyncio.ensure_future(self.broadcast.run()))
        log.info(
            "consuming %s as %s/%s into scope %s:%s (namespaces %s, registry %s) from %s",
            config.stream, config.group, config.consumer, settings.prefix, config.group,
            ",".join(sorted(config.namespaces)), self.registry.fingerprint, where,
        )  # fmt: skip

    def _extra_observers(self) -> tuple[ConsumerObserver, ...]:
        if not self.settings.health_port:
            return self._observers  # no page to feed
        return (*self._observers, HistoryObserver(self.history, self.config.group))

    def _client(self, settings: RedisSettings) -> AsyncClient:
        if settings.cluster:
            cluster = create_async_cluster(settings)
            self._owned.append(cluster)
            return cluster
        pool = create_async_pool(settings)
        self._owned.append(pool)
        client = redis.asyncio.Redis(connection_pool=pool)
        self._owned.append(client)
        return client

    async def _serve_probes(self) -> None:
        # Here, not at the top: the page's renderer (rich, typer via the ops helpers) is only
        # loaded by a sidecar that serves probes.
        from cachebus.ops.status_page import StatusPage

        settings = self.settings
        pages = {}
        if isinstance(self.stream_client, redis.asyncio.Redis):  # not a cluster client
            single = settings.partitions == 1 or settings.partition is not None
            self._status_page = StatusPage(
                self.stream_client,
                (self._part_keys,) if single else self.keys.all_partitions(),
                [self.config.stream],
                history=self.history,
                title=f"cachebus: {self.config.group} ({self.config.consumer})",
                where=self.stream_settings.redacted_url,
            ).start()
            pages["/status"] = self._status_page.render
        server = HealthServer(
            self.health,
            host=settings.health_host,
            port=settings.health_port,
            metrics=endpoint.render if (endpoint := self._observed.endpoint) is not None else None,
            pages=pages,
        )
        try:
            self._health_server = await server.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot serve probes on {settings.health_host}:{settings.health_port}: {exc}"
            ) from None

    async def wait(self) -> None:
        """Until the consumers end: after :meth:`stop`, or when one fails (then everything
        is stopped and its error raised)."""
        if not self._tasks:
            raise ConsumerError("this service is not running: start() it first")
        await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(t.done() and not t.cancelled() and t.exception() for t in self._tasks):
            await self.stop()
        if self._error is not None:
            raise self._error

    async def run(self) -> None:
        """Start (if needed) and consume until :meth:`stop` or a failure."""
        if self._state == "new":
            await self.start()
        await self.wait()

    async def stop(self) -> None:
        """Stop consuming (finish and ack the batch in flight), then close everything this
        service created. Idempotent; bounded by ``hard_deadline_s``."""
        async with self._lock:
            if self._state in ("stopped", "new"):
                self._state = "stopped"
                return
            self._state = "stopping"
            stopping = [c.stop() for c in (self.consumer, self.broadcast) if c is not None]
            await asyncio.gather(*stopping)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.config.hard_deadline_s)
            for task in self._tasks:
                if not task.done():
                    await cancel_and_wait(task, within=1.0)
                elif not task.cancelled() and task.exception() is not None:
                    self._error = self._error or task.exception()
            await self._close()
            self._state = "stopped"

    async def _close(self) -> None:
        if self._health_server is not None:
            await self._health_server.close()
            self._health_server = None
        if self._status_page is not None:
            await self._status_page.close()
            self._status_page = None
        await self._observed.close()
        while self._owned:
            await self._owned.pop().aclose()

    async def __aenter__(self) -> ConsumerService:
        return await self.start()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.stop()
        if exc is None and self._error is not None:
            raise self._error

    # ---- state ------------------------------------------------------------------------------
    def health(self) -> Health:
        """The group consumer's health (liveness, readiness and why not)."""
        if self.consumer is None:
            return _NOT_STARTED
        health = self.consumer.health()
        if self._state in ("stopping", "stopped"):  # its last reading would still say ready
            reasons = (*health.reasons, f"the service is {self._state}")
            return dataclasses.replace(health, ready=False, reasons=reasons)
        return health

    async def wait_ready(self, within: float) -> bool:
        """Whether the group became ready (connected, group present, own pending replayed)
        within ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.health().ready:
            if loop.time() >= deadline or self._state != "running":
                return False
            await asyncio.sleep(0.01)
        return True

    def _l1_fillable(self) -> bool:
        """The L1 is filled only once the group has caught up since this process started.

        The broadcast consumer starts at the stream's end, so it never sees events published
        before that; until the group has applied those to L2, L2 may still hold what they
        invalidate, and an L1 filled from it would keep it until its TTL. Nor while the
        broadcast consumer is disconnected: nothing keeps the L1 then (it is flushed when the
        outage outlasts its budget, and a fill between two flushes would outlive them).
        """
        broadcast = self.broadcast
        if broadcast is None:
            return False
        if not self._l1_warm and broadcast.position:
            health = self.health()
            self._l1_warm = health.ready and health.lag == 0 and not health.pending
        return self._l1_warm and broadcast.connected

    @property
    def stats(self) -> ConsumerStats:
        return ConsumerStats() if self.consumer is None else self.consumer.stats

    @property
    def health_port(self) -> int | None:
        """The port the probe server listens on (the one chosen, or bound), None without."""
        return self._health_server.port if self._health_server is not None else None

    def __repr__(self) -> str:
        return (
            f"ConsumerService(service={self.config.group!r}, stream={self.config.stream!r}, "
            f"state={self._state!r})"
        )
