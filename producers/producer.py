"""The asyncio producer: publish invalidations to the stream, one at a time or batched.

Every publish either returns the entry id Redis gave the event, or raises within the
documented bound: :class:`PublishError` (``ambiguous`` says whether the entry may exist anyway,
``event_ids`` which events), or :class:`ContractError` when the event breaks a rule (then
nothing was sent). Nothing is dropped silently, and nothing is retried with a new id: redis-py
retries re-send the same bytes, and publishing the same event object again re-sends its
``event_id``, so consumers apply it at most twice, which is harmless.

The bound is :func:`cachebus.producers.publish_bound` of the settings (12.15 s with the defaults of
:class:`RedisSettings`; about 4.2 s with 0.5 s timeouts), enforced here with a deadline
around each round trip. Given a client instead of settings, pass ``publish_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import redis.asyncio
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from cachebus.contracts.errors import CachebusError, PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.factory import EventFactory, Ref
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import AsyncClient, run_async
from cachebus.core.connection import (
    RedisSettings,
    async_client,
    create_async_cluster,
    create_async_pool,
)
from cachebus.producers._core import (
    DEFAULT_MAXLEN,
    DEFAULT_PUBLISH_TIMEOUT,
    Payload,
    PayloadBuffer,
    ProducerCore,
    chunked,
    producer_settings,
    publish_bound,
)
from cachebus.producers.invalidates import AsyncInvalidates

__all__ = ["AsyncBatch", "Producer"]


def _address(client: Any) -> tuple[str, int]:
    startup = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if startup:  # a Redis Cluster client: the node it was pointed at
        host, _, port = next(iter(startup)).rpartition(":")
        return host, int(port)
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return (
        str(kwargs.get("host") or kwargs.get("path") or "localhost"),
        int(kwargs.get("port") or 6379),
    )


class Producer:
    """Publishes invalidation events for one service to one stream (asyncio).

    ``client_or_settings``: :class:`RedisSettings` (the producer borrows this process's shared
    pool for them) or a ``redis.asyncio.Redis`` you own. :meth:`from_url` makes a producer
    that owns its pool; close it with :meth:`aclose` or ``async with``.

    Partitioned streams (``keys=StreamKeys(prefix, partitions=N)``, N > 1): each event goes to
    its partition (see :mod:`cachebus.producers._routing`: a keys event by namespace and key, split
    when its ids span partitions; a pattern or flush to its namespace's home partition), and entry
    ids come back as ``"<partition>/<id>"``. On a Redis Cluster pass a
    ``redis.asyncio.RedisCluster``, or settings with ``cluster=True`` (the producer then owns
    its cluster client).
    """

    def __init__(
        self,
        client_or_settings: AsyncClient | RedisSettings,
        stream: str = "inval",
        *,
        producer_name: str,
        keys: StreamKeys | None = None,
        registry: Registry,
        maxlen: int | None = DEFAULT_MAXLEN,
        publish_timeout: float | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._settings: RedisSettings | None = None
        self._client: AsyncClient | None = None
        self._pool: redis.asyncio.BlockingConnectionPool | None = None
        self._owned_cluster: redis.asyncio.RedisCluster | None = None
        # One-at-a-time publishes run on a connection held by this producer while no other
        # single publish is in flight: taking a connection from the blocking pool costs more
        # than the rest of the publish (measured in `cachebus bench publish`).
        self._direct: redis.asyncio.Redis | None = None
        self._direct_busy = False
        self._direct_allowed = (
            isinstance(client_or_settings, RedisSettings) and not client_or_settings.cluster
        )
        if isinstance(client_or_settings, RedisSettings):
            self._settings = producer_settings(client_or_settings)
            address = self._settings.address
            timeout = publish_timeout or publish_bound(self._settings)
        else:
            self._client = client_or_settings
            address = _address(client_or_settings)
            timeout = publish_timeout or DEFAULT_PUBLISH_TIMEOUT
        self._core = ProducerCore(
            stream=stream,
            keys=keys or StreamKeys(),
            producer_name=producer_name,
            registry=registry,
            maxlen=maxlen,
            timeout=timeout,
            address=address,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    @classmethod
    def from_url(cls, url: str, stream: str = "inval", **kwargs: Any) -> Producer:
        """A producer owning its own pool; ``kwargs`` go to RedisSettings or the producer."""
        names = set(RedisSettings.__dataclass_fields__) - {"url"}
        settings = producer_settings(
            RedisSettings.from_url(url, **{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        )
        producer = cls(settings, stream, **kwargs)
        if settings.cluster:
            return producer  # its cluster client is made on first use, inside the loop
        producer._pool = create_async_pool(settings)
        producer._client = redis.asyncio.Redis(connection_pool=producer._pool)
        return producer

    # ---- properties ----------------------------------------------------------------------
    @property
    def stream_key(self) -> str:
        return self._core.config.stream_key

    @property
    def stream_keys(self) -> tuple[str, ...]:
        """The Redis keys published to: one per partition."""
        router = self._core.router
        return router.stream_keys if router is not None else (self.stream_key,)

    @property
    def publish_timeout(self) -> float:
        """The documented bound (seconds) within which every publish returns or raises."""
        return self._core.config.timeout

    @property
    def factory(self) -> EventFactory:
        """The :class:`cachebus.contracts.EventFactory` of this producer (its name and registry)."""
        return self._core.factory

    # ---- publishing --------------------------------------------------------------------------
    async def publish(self, event: Event) -> str:
        """Append one event; returns its entry id. Publishing it again re-sends its event_id."""
        return (await self._send([self._core.event_payload(event)]))[0]

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        """Append events in pipelined round trips; returns their entry ids in order."""
        batch = self.batch()
        for event in events:
            batch.add(event)
        return await batch.send()

    async def invalidate_keys(
        self, namespace: str, ids: Iterable[str | int], *, reason: str = ""
    ) -> str:
        """Ids of one namespace are stale (up to 1000; use :meth:`batch` for more)."""
        payload = self._core.factory.keys_payload(namespace, ids, reason)
        return (await self._send([payload]))[0]

    async def invalidate_pattern(self, namespace: str, pattern: str, *, reason: str = "") -> str:
        """Ids of one namespace matching a namespace-relative glob are stale."""
        payload = self._core.factory.pattern_payload(namespace, pattern, reason)
        return (await self._send([payload]))[0]

    async def flush_namespace(self, namespace: str, *, reason: str = "") -> str:
        """Everything cached in one namespace is stale."""
        payload = self._core.factory.flush_payload(namespace, reason)
        return (await self._send([payload]))[0]

    async def invalidate(self, *refs: Ref, reason: str = "") -> list[str]:
        """Items, patterns or events (``registry["products"].ref(product_id=42)``,
        ``.prefix(...)``), grouped into as few events as they fit; returns the entry ids."""
        return await self._publish_refs(refs, reason)

    def batch(self) -> AsyncBatch:
        """``async with producer.batch() as b:`` sends every event added, in one round trip."""
        return AsyncBatch(self)

    def invalidates(self, *refs: Ref | Any, reason: str = "") -> AsyncInvalidates:
        """Publish after the wrapped write succeeds, never when it raises.

        As a decorator of an async function, each ref may be a callable receiving the
        function's arguments; as ``async with``, add more with ``scope.add(ref)``.
        """
        return AsyncInvalidates(self._publish_refs, refs, reason)

    async def _publish_refs(self, refs: Sequence[Ref], reason: str) -> list[str]:
        batch = self.batch()
        batch.invalidate(*refs, reason=reason)
        return await batch.send()

    # ---- the edge ----------------------------------------------------------------------------
    def _connection(self) -> AsyncClient:
        if self._client is None:
            assert self._settings is not None
            if self._settings.cluster:
                self._owned_cluster = create_async_cluster(self._settings)
                self._client = self._owned_cluster
            else:
                self._client = async_client(self._settings)  # needs the running loop
        return self._client

    async def _run(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        step = self._core.step(calls)
        if len(calls) > 1 or self._direct_busy or not self._direct_allowed:
            return await run_async(step, self._connection(), self._core.where)
        if self._direct is None:
            client = self._connection()
            assert isinstance(client, redis.asyncio.Redis)
            pool = client.connection_pool
            self._direct = redis.asyncio.Redis(connection_pool=pool, single_connection_client=True)
        self._direct_busy = True
        try:
            return await run_async(step, self._direct, self._core.where)
        finally:
            self._direct_busy = False

    async def _send(self, payloads: Sequence[Payload]) -> list[str]:
        core = self._core
        span, calls = core.prepare(payloads)
        deadline = asyncio.timeout(core.config.timeout)
        try:
            async with deadline:
                replies = await self._run(calls)
        except CachebusError as exc:
            error = core.failure(payloads, span, exc, timed_out=False)
            raise error from error.__cause__
        except BaseException as exc:
            if deadline.expired():
                error = core.failure(payloads, span, exc, timed_out=True)
                raise error from error.__cause__
            core.tracing.failed(span, exc)  # cancelled, or a bug: the entry may exist
            raise
        return core.entry_ids(payloads, core.recorded(calls, replies), span)

    async def aclose(self) -> None:
        """Give back the held connection; close the pool if this producer owns it."""
        if self._direct is not None:
            await self._direct.aclose()
            self._direct = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        if self._owned_cluster is not None:
            cluster, self._owned_cluster = self._owned_cluster, None
            self._client = None
            await cluster.aclose()

    def __del__(self) -> None:
        # A producer dropped without aclose(): close its held connection the way redis-py's
        # own finalizer would, without the ResourceWarning about a client we created.
        direct = getattr(self, "_direct", None)
        connection = getattr(direct, "connection", None)
        if direct is not None and connection is not None:
            direct.connection = None
            connection._close()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Producer(stream={self.stream_key!r}, producer={self._core.factory.producer!r})"


class AsyncBatch(PayloadBuffer):
    """Events sent together when the ``async with`` block ends without an exception.

    Round trips carry up to 1000 events each; :attr:`entry_ids` holds the ids after sending.
    """

    __slots__ = ("_producer",)

    def __init__(self, producer: Producer) -> None:
        super().__init__(producer._core)
        self._producer = producer

    async def send(self) -> list[str]:
        """Send what was added so far; returns its entry ids (also kept in entry_ids)."""
        pending, self.payloads = self.payloads, []
        sent: list[str] = []
        chunks = chunked(pending)
        for n, chunk in enumerate(chunks):
            try:
                sent.extend(await self._producer._send(chunk))
            except PublishError as exc:
                unsent = tuple(p["event_id"] for c in chunks[n + 1 :] for p in c)
                raise PublishError(
                    f"{exc} ({len(unsent)} more events of the batch were not sent)",
                    ambiguous=exc.ambiguous,
                    event_ids=exc.event_ids + unsent,
                ) from exc.__cause__
        self.entry_ids.extend(sent)
        self.event_ids.extend([p["event_id"] for p in pending])
        return sent

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.send()
