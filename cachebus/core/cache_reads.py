"""The reads of :class:`~cachebus.core.cache.Cache`: ``get``, ``get_many``, ``get_or_set``,
``cached``.

Typed (:mod:`cachebus.core.typed`): a read without ``type=`` returns the stored JSON or bytes,
one with ``type=X`` validates into ``X``; ``get_or_set`` is typed by its loader. The fill flow
(:mod:`cachebus.core.fill`) is shared with the other facade; this module is its
asyncio driver.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from cachebus.core._client import check_colocated
from cachebus.core._core import CacheCore, Kind, Read
from cachebus.core._io import Batch, Step
from cachebus.core.cached import AsyncCached, AsyncPublisher, KeySpec
from cachebus.core.fill import Flow, Load, Pause, fill_flow, single
from cachebus.core.local import LocalCache
from cachebus.core.singleflight import AsyncSingleFlight
from cachebus.core.typed import Stored, ValueType, typed_read, value_type

__all__ = ["AsyncReads"]

T = TypeVar("T")
D = TypeVar("D")
R = TypeVar("R")
P = ParamSpec("P")


class AsyncReads:
    """Reads through the failure policy of the facade's ``_run`` (misses when Redis is down)."""

    _core: CacheCore
    _cluster: bool
    _flight: AsyncSingleFlight

    async def _run(self, step: Step[T], kind: Kind, fallback: T | None = None) -> T:
        raise NotImplementedError  # the facade's I/O edge

    @overload
    async def get(self, namespace: str, ident: str | int) -> Stored | None: ...
    @overload
    async def get(self, namespace: str, ident: str | int, default: D) -> Stored | D: ...
    @overload
    async def get(self, namespace: str, ident: str | int, *, type: type[T]) -> T | None: ...
    @overload
    async def get(
        self, namespace: str, ident: str | int, default: D, *, type: type[T]
    ) -> T | D: ...
    async def get(
        self, namespace: str, ident: str | int, default: object = None, *, type: object = None
    ) -> Any:
        """The cached value (validated into ``type``, see :mod:`cachebus.core.typed`), or
        ``default`` on a miss (also when Redis is unavailable)."""
        typed: ValueType[Any] | None = None if type is None else value_type(type)
        step = self._core.read_step(namespace, [str(ident)])
        (read,) = await self._run(step, Kind.READ, [Read(False)])
        read = typed_read(self._core, read, typed)
        return read.value if read.hit else default

    @overload
    async def get_many(self, namespace: str, ids: Iterable[str | int]) -> dict[str, Stored]: ...
    @overload
    async def get_many(
        self, namespace: str, ids: Iterable[str | int], *, type: type[T]
    ) -> dict[str, T]: ...
    async def get_many(
        self, namespace: str, ids: Iterable[str | int], *, type: object = None
    ) -> dict[str, Any]:
        """The hits among ``ids`` (one round trip), keyed by id."""
        idents = [str(i) for i in ids]
        if not idents:
            return {}
        typed: ValueType[Any] | None = None if type is None else value_type(type)
        step = self._core.read_step(namespace, idents)
        reads = await self._run(step, Kind.READ, [Read(False)] * len(idents))
        checked = (typed_read(self._core, r, typed) for r in reads)
        return {i: r.value for i, r in zip(idents, checked, strict=True) if r.hit}

    async def get_or_set(
        self,
        namespace: str,
        ident: str | int,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        type: type[T] | None = None,
    ) -> T:
        """The cached value, or ``await loader()`` stored under stampede protection.

        One loader per key runs in this process (single-flight) and, through a Redis lease,
        across processes; see :mod:`cachebus.core.fill`. With ``type``, a hit is validated
        into it (a value that is not one is loaded again) and the loaded value is stored in
        its JSON form; without, a hit is the stored JSON, which equals what the loader
        returned for JSON values (dicts, lists, strings, numbers) and bytes.
        """
        typed: ValueType[Any] | None = None if type is None else value_type(type)
        return typing.cast(T, await self._fill(namespace, ident, loader, ttl, typed))

    def cached(
        self,
        namespace: str,
        *,
        key: KeySpec = None,
        ttl: float | None = None,
        type: object = None,
        producer: AsyncPublisher | None = None,
        reason: str = "",
        local: LocalCache | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], AsyncCached[P, R]]:
        """Cache an async function's results under ``namespace``'s key template, built from its
        arguments, read through the L1 ``local`` if given; its ``invalidate(*args)`` publishes
        through ``producer``. See
        :mod:`cachebus.core.cached`. Checked here: the namespace, the key's parts, the ttl."""
        self._core.keyspace.namespace(namespace)
        self._core.ttl_seconds(namespace, ttl)

        def decorate(fn: Callable[P, Awaitable[R]]) -> AsyncCached[P, R]:
            return AsyncCached(
                self,
                fn,
                namespace,
                key=key,
                ttl=ttl,
                type=type,
                producer=producer,
                reason=reason,
                local=local,
            )

        return decorate

    async def _fill(
        self,
        namespace: str,
        ident: str | int,
        loader: Callable[[], Any],
        ttl: float | None,
        typed: ValueType[Any] | None,
    ) -> Any:
        ident = str(ident)
        self._core.keyspace.key(namespace, ident)  # bad input raises here, not in the flight
        if self._cluster:
            check_colocated(self._core.keyspace, namespace, ident)
        return await self._flight.run(
            (namespace, ident),
            lambda: self._drive(fill_flow(self._core, namespace, ident, ttl, typed), loader),
        )

    async def _drive(self, flow: Flow[Any], loader: Callable[[], Awaitable[Any]]) -> Any:
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            if isinstance(op, Batch):
                try:
                    reply = await self._run(single(op), Kind.FLOW)
                except Exception as exc:
                    error = exc
            elif isinstance(op, Pause):
                await asyncio.sleep(op.seconds)
            else:
                assert isinstance(op, Load)
                try:
                    reply = await loader()
                except Exception as exc:
                    error = exc
