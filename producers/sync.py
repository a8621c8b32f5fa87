"""The sync producer: the same API as :class:`cachebus.producers.Producer` for threads and scripts.

It shares every step with the async producer (payloads, span, XADD batch, outcome) through
:mod:`cachebus.producers._core` and drives them with :func:`cachebus.core._io.run_sync`. Its bound
is the same :func:`cachebus.producers.publish_bound`, kept by the socket, connect and pool timeouts
and the bounded retries of the settings (a sync call cannot be cancelled from outside); given a
client instead of settings, the bound is whatever that client's timeouts make it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import redis
import redis.cluster
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from cachebus.contracts.errors import CachebusError, PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.factory import EventFactory, Ref
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import SyncClient, run_sync
from cachebus.core.connection import (
    RedisSettings,
    create_sync_cluster,
    create_sync_pool,
    sync_client,
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
from cachebus.producers.invalidates import SyncInvalidates
from cachebus.producers.producer import _address

__all__ = ["SyncBatch", "SyncProducer"]


class SyncProducer:
    """Publishes invalidation events for one service to one stream (blocking calls)."""

    def __init__(
        self,
        client_or_settings: SyncClient | RedisSettings,
        stream: str = "inval",
        *,
        producer_name: str,
        keys: StreamKeys | None = None,
        registry: Registry,
        maxlen: int | None = DEFAULT_MAXLEN,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._pool: redis.BlockingConnectionPool | None = None
        self._owned_cluster: redis.cluster.RedisCluster | None = None
        self._client: SyncClient
        if isinstance(client_or_settings, RedisSettings):
            settings = producer_settings(client_or_settings)
            if settings.cluster:
                self._owned_cluster = create_sync_cluster(settings)
                self._client = self._owned_cluster
            else:
                self._client = sync_client(settings)
            address, timeout = settings.address, publish_bound(settings)
        else:
            self._client = client_or_settings
            address, timeout = _address(client_or_settings), DEFAULT_PUBLISH_TIMEOUT
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
    def from_url(cls, url: str, stream: str = "inval", **kwargs: Any) -> SyncProducer:
        """A producer owning its own pool; ``kwargs`` go to RedisSettings or the producer."""
        names = set(RedisSettings.__dataclass_fields__) - {"url"}
        settings = producer_settings(
            RedisSettings.from_url(url, **{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        )
        producer = cls(settings, stream, **kwargs)
        if settings.cluster:
            return producer  # it owns its cluster client already
        producer._pool = create_sync_pool(settings)
        producer._client = redis.Redis(connection_pool=producer._pool)
        return producer

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
        return self._core.config.timeout

    @property
    def factory(self) -> EventFactory:
        return self._core.factory

    # ---- publishing (mirrors Producer) -------------------------------------------------------
    def publish(self, event: Event) -> str:
        return self._send([self._core.event_payload(event)])[0]

    def publish_many(self, events: Iterable[Event]) -> list[str]:
        batch = self.batch()
        for event in events:
            batch.add(event)
        return batch.send()

    def invalidate_keys(self, namespace: str, ids: Iterable[str | int], *, reason: str = "") -> str:
        return self._send([self._core.factory.keys_payload(namespace, ids, reason)])[0]

    def invalidate_pattern(self, namespace: str, pattern: str, *, reason: str = "") -> str:
        return self._send([self._core.factory.pattern_payload(namespace, pattern, reason)])[0]

    def flush_namespace(self, namespace: str, *, reason: str = "") -> str:
        return self._send([self._core.factory.flush_payload(namespace, reason)])[0]

    def batch(self) -> SyncBatch:
        return SyncBatch(self)

    def invalidate(self, *refs: Ref, reason: str = "") -> list[str]:
        """Items, patterns or events, grouped into as few events as they fit; entry ids."""
        return self._publish_refs(refs, reason)

    def invalidates(self, *refs: Ref | Any, reason: str = "") -> SyncInvalidates:
        return SyncInvalidates(self._publish_refs, refs, reason)

    def _publish_refs(self, refs: Sequence[Ref], reason: str) -> list[str]:
        batch = self.batch()
        batch.invalidate(*refs, reason=reason)
        return batch.send()

    def _send(self, payloads: Sequence[Payload]) -> list[str]:
        core = self._core
        span, calls = core.prepare(payloads)
        try:
            replies = run_sync(core.step(calls), self._client, core.where)
        except CachebusError as exc:
            error = core.failure(payloads, span, exc, timed_out=False)
            raise error from error.__cause__
        except BaseException as exc:
            core.tracing.failed(span, exc)
            raise
        return core.entry_ids(payloads, core.recorded(calls, replies), span)

    def close(self) -> None:
        """Close the pool if this producer owns it (made by :meth:`from_url`)."""
        if self._pool is not None:
            self._pool.disconnect()
            self._pool = None
        if self._owned_cluster is not None:
            cluster, self._owned_cluster = self._owned_cluster, None
            cluster.close()

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncProducer(stream={self.stream_key!r}, producer={self._core.factory.producer!r})"


class SyncBatch(PayloadBuffer):
    """Events sent together when the ``with`` block ends without an exception."""

    __slots__ = ("_producer",)

    def __init__(self, producer: SyncProducer) -> None:
        super().__init__(producer._core)
        self._producer = producer

    def send(self) -> list[str]:
        pending, self.payloads = self.payloads, []
        sent: list[str] = []
        chunks = chunked(pending)
        for n, chunk in enumerate(chunks):
            try:
                sent.extend(self._producer._send(chunk))
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

    def __enter__(self) -> SyncBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.send()
