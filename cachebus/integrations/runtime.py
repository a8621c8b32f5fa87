"""One object with what a service needs to read through caches and publish invalidations.

::

    runtime = CachebusRuntime(CachebusSettings(service="web", broadcast=True))

    @runtime.cache.cached("products", producer=runtime.producer, local=runtime.local)
    async def product(product_id: int) -> Product: ...

    async with runtime:  # the consumers run, the cache and the producer are usable
        ...

It reuses the composition root rather than rewiring it: :attr:`service` is the service's
:class:`~cachebus.ConsumerService` (the group consumer keeping the service's L2 scope, with
``broadcast`` the broadcast consumer keeping its L1, probes and metrics as configured). Beside
it, the runtime owns what a request path needs and the root does not make:

* :attr:`cache`, a :class:`~cachebus.Cache` on the service's scope (the one its consumer
  keeps), on a pool of its own with the circuit breaker on (the consumer's cache has none: it
  retries invalidations itself), so a Redis outage turns reads into misses, not errors;
* :attr:`local`, the service's L1 (``None`` without ``broadcast``): filled only once the group
  has caught up since the process started;
* :attr:`producer`, a :class:`~cachebus.Producer` on the service's stream, named after the
  service unless ``producer_name`` says otherwise, on a pool of its own.

Everything is checked and built when the runtime is (no I/O: pools connect on first use), so
decorators can be applied before :meth:`start`. :meth:`stop` stops the consumers (they finish
their batch), then closes the producer and the cache: every pool it made, none it did not.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from cachebus.consumers.observe import Health
from cachebus.contracts.keys import KeySpace
from cachebus.contracts.registry import Registry
from cachebus.core._io import AsyncClient
from cachebus.core.cache import Cache
from cachebus.core.config import CacheConfig
from cachebus.core.connection import RedisSettings, create_async_cluster, create_async_pool
from cachebus.core.local import LocalCache
from cachebus.producers.producer import Producer
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings

__all__ = ["CachebusRuntime"]


class CachebusRuntime:
    """A service's consumers, its read cache and L1, and its producer, started together."""

    def __init__(
        self,
        settings: CachebusSettings | None = None,
        *,
        registry: Registry | None = None,
        producer_name: str | None = None,
        cache_config: CacheConfig | None = None,
        **service_kwargs: Any,
    ) -> None:
        self.service = ConsumerService(
            settings if settings is not None else CachebusSettings(),
            registry=registry,
            **service_kwargs,
        )
        service = self.service
        self.registry: Registry = service.registry
        self.keyspace = KeySpace(
            service.settings.prefix, service.config.group, registry=self.registry
        )
        (cache_config or CacheConfig()).check_against(self.registry)
        self._cache_client, self._cache_pool = _client(service.cache_settings)
        self.cache = Cache(self._cache_client, self.keyspace, cache_config)
        stream = service.stream_settings
        self.producer = Producer.from_url(
            stream.url,
            service.config.stream,
            producer_name=producer_name or service.config.group,
            keys=service.keys,
            registry=self.registry,
            cluster=stream.cluster,
        )
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, *, registry: Registry, service: str, **settings: Any
    ) -> CachebusRuntime:
        """The runtime of ``service`` on ``url``; ``settings`` are :class:`CachebusSettings`
        fields (``broadcast=True``, ``cache_url=...``), the rest from ``CACHEBUS_*``."""
        values: dict[str, Any] = {"redis_url": url, "service": service, **settings}
        return cls(CachebusSettings(**values), registry=registry)

    @property
    def local(self) -> LocalCache | None:
        """The service's L1 (with ``broadcast``), kept by its broadcast consumer."""
        return self.service.local

    async def start(self) -> CachebusRuntime:
        """Start the service's consumers (and probes); the cache and producer need no start."""
        await self.service.start()
        return self

    async def stop(self) -> None:
        """Stop the consumers, then close the producer's and the cache's pools. Idempotent."""
        try:
            await self.service.stop()
        finally:
            if not self._closed:
                self._closed = True
                await self.producer.aclose()
                await self._cache_client.aclose()
                if self._cache_pool is not None:
                    await self._cache_pool.aclose()

    async def __aenter__(self) -> CachebusRuntime:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def health(self) -> Health:
        """The group consumer's health: ``ready`` and, when not, ``reasons``."""
        return self.service.health()

    async def wait_ready(self, within: float) -> bool:
        return await self.service.wait_ready(within)

    def __repr__(self) -> str:
        return f"CachebusRuntime({self.service!r})"


def _client(
    settings: RedisSettings,
) -> tuple[AsyncClient, redis.asyncio.BlockingConnectionPool | None]:
    if settings.cluster:
        return create_async_cluster(settings), None
    pool = create_async_pool(settings)
    return redis.asyncio.Redis(connection_pool=pool), pool
