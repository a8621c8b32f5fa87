"""``@cache.cached(namespace, ...)``: a function whose results are cached under registry keys.

The read side's counterpart of ``@producer.invalidates``. The decorated function's arguments
name the parts of the namespace's key template, so the id a reader caches under is the id a
producer invalidates (``registry["products"].ref(product_id=42)`` and
``load_product(42)`` meet on ``products:42``); every call is a lease-guarded
``get_or_set`` (one loader per key per process and across processes, a fill that read old data
before an invalidation is refused), and the value comes back in the function's declared
return type (validated by pydantic, see :mod:`cachebus.core.typed`), on a hit as on a miss.

Which argument fills which part (``key=``), checked when the function is decorated:

* nothing: each placeholder is a parameter of the same name (``{product_id}`` and
  ``def load(product_id: int)``);
* a mapping ``{placeholder: parameter}`` when the names differ;
* a callable receiving the function's arguments and returning the parts
  (``key=lambda p: {"product_id": p.id}``).

With ``local=`` (a :class:`~cachebus.LocalCache`, such as ``ConsumerService.local``) a call
reads the in-process L1 first and fills it after the L2, guarded like every L1 fill (a token
taken before the L2 read; refused if the key was invalidated meanwhile). The L1 holds the
object itself: treat it as read-only.

Functions, not methods: a cached function is an object that does not bind ``self``; decorate
a module-level function, or one made where the cache is (an app factory).

``fn.ref(*args)`` is the :class:`KeyRef` a call caches under; ``await fn.invalidate(*args)``
(sync: ``fn.invalidate(*args)``) publishes its invalidation through the ``producer`` given to
``cached(...)`` (a :class:`~cachebus.Producer` / :class:`~cachebus.SyncProducer`, or anything
with the same ``invalidate(*refs, reason=...)``), so every service's consumer drops it from its
cache, this one's included. The cache layer does not import the producer layer: it only needs
that method.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.names import KeyRef
from cachebus.contracts.registry import Namespace
from cachebus.contracts.templates import Parts
from cachebus.core.typed import ValueType, value_type

if TYPE_CHECKING:
    from cachebus.core.cache_reads import AsyncReads
    from cachebus.core.local import LocalCache
    from cachebus.core.sync_reads import SyncReads

__all__ = ["AsyncCached", "AsyncPublisher", "KeySpec", "SyncCached", "SyncPublisher"]

P = ParamSpec("P")
R = TypeVar("R")

#: How a call's arguments become the key's parts (see the module docstring).
KeySpec = Callable[..., Parts] | Mapping[str, str] | None


class AsyncPublisher(Protocol):
    """What ``invalidate()`` of an async cached function publishes through (a ``Producer``)."""

    async def invalidate(self, *refs: KeyRef, reason: str = "") -> list[str]: ...


class SyncPublisher(Protocol):
    """What ``invalidate()`` of a sync cached function publishes through (a ``SyncProducer``)."""

    def invalidate(self, *refs: KeyRef, reason: str = "") -> list[str]: ...


_MISS = object()


def _part(value: object) -> str | int:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return str(value)  # a UUID, a Decimal, an enum member...: checked by the template


class _Binding:
    """Arguments to an id, decided and checked once, when the function is decorated."""

    __slots__ = ("_fn_name", "_key", "_mapping", "_signature", "namespace")

    def __init__(self, fn: Callable[..., object], namespace: Namespace, key: KeySpec) -> None:
        self.namespace = namespace
        self._fn_name = getattr(fn, "__qualname__", repr(fn))
        self._signature = inspect.signature(fn)
        self._key = None if key is None or isinstance(key, Mapping) else key
        self._mapping: dict[str, str] = {}
        if self._key is not None:
            return
        placeholders = namespace.key.placeholders
        mapping = dict(key) if isinstance(key, Mapping) else {p: p for p in placeholders}
        wrong = set(mapping) - set(namespace.key.placeholders)
        missing = set(namespace.key.placeholders) - set(mapping)
        absent = sorted(p for p in mapping.values() if p not in self._signature.parameters)
        if wrong or missing or absent:
            raise ConfigError(
                f"@cached({namespace.name!r}) on {self._fn_name}: the key template "
                f"{namespace.key.text!r} needs the parts {list(namespace.key.placeholders)}, "
                + (f"not {sorted(wrong)}; " if wrong else "")
                + (f"{sorted(missing)} not mapped; " if missing else "")
                + (f"{self._fn_name} has no parameter {absent}; " if absent else "")
                + "name its parameters like the parts, or pass key={part: parameter} "
                "or key=lambda <its parameters>: {part: value}"
            )
        self._mapping = mapping

    def ref(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> KeyRef:
        if self._key is not None:
            parts = self._key(*args, **kwargs)
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            parts = {part: _part(bound.arguments[p]) for part, p in self._mapping.items()}
        return self.namespace.ref(parts)


def _return_type(fn: Callable[..., object], given: object) -> ValueType[Any] | None:
    if given is not None:
        return value_type(given)
    try:
        hint = typing.get_type_hints(fn).get("return")
    except (NameError, TypeError) as exc:
        raise ConfigError(
            f"@cached on {getattr(fn, '__qualname__', fn)}: its return annotation cannot be "
            f"resolved ({exc}); pass type=<the return type> to cached(...)"
        ) from None
    if hint is None or hint is Any or hint is type(None):
        return None  # undeclared: values come back as their JSON
    return value_type(hint)


class _Cached(Generic[P, R]):
    def __init__(
        self,
        fn: Callable[P, Any],
        namespace: Namespace,
        *,
        key: KeySpec,
        ttl: float | None,
        type: object,
        reason: str,
        local: LocalCache | None,
    ) -> None:
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", "cached")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = fn.__doc__
        self.namespace = namespace.name
        self.ttl = ttl
        self._binding = _Binding(fn, namespace, key)
        self._typed = _return_type(fn, type)
        self._reason = reason or f"{self.__qualname__} changed"
        self._local = local

    def _from_l1(self, ref: KeyRef) -> tuple[int, object]:
        """The L1's fill token (taken before anything is read) and its value, or _MISS."""
        local = self._local
        if local is None:
            return 0, _MISS
        return local.reserve(), local.get(ref.namespace, ref.id, _MISS)

    def _to_l1(self, ref: KeyRef, value: object, token: int) -> None:
        if self._local is not None:  # refused if invalidated since the token, or not warm yet
            self._local.fill(ref.namespace, ref.id, value, token)

    def ref(self, *args: P.args, **kwargs: P.kwargs) -> KeyRef:
        """The entry a call with these arguments is cached under."""
        return self._binding.ref(args, kwargs)

    def __repr__(self) -> str:
        return f"<cached {self.__qualname__} in {self.namespace!r}>"

    def _no_producer(self) -> ConfigError:
        return ConfigError(
            f"{self.__qualname__}.invalidate() publishes through a producer: pass "
            "producer=... to cached(...), or publish fn.ref(...) with your producer"
        )


class AsyncCached(_Cached[P, R]):
    """An async function cached in a :class:`~cachebus.Cache` (made by ``Cache.cached``)."""

    def __init__(
        self,
        cache: AsyncReads,
        fn: Callable[P, Awaitable[R]],
        namespace: str,
        *,
        key: KeySpec = None,
        ttl: float | None = None,
        type: object = None,
        producer: AsyncPublisher | None = None,
        reason: str = "",
        local: LocalCache | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"{getattr(fn, '__qualname__', fn)!r} is not async: cache sync functions "
                "with SyncCache.cached"
            )
        ns = cache._core.keyspace.namespace(namespace)
        super().__init__(fn, ns, key=key, ttl=ttl, type=type, reason=reason, local=local)
        self._cache = cache
        self._fn = fn
        self._producer = producer

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ref = self._binding.ref(args, kwargs)
        token, value = self._from_l1(ref)
        if value is _MISS:
            load = lambda: self._fn(*args, **kwargs)  # noqa: E731
            value = await self._cache._fill(ref.namespace, ref.id, load, self.ttl, self._typed)
            self._to_l1(ref, value, token)
        return typing.cast(R, value)  # the loader's R, or a hit validated into R

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """Publish the invalidation of this call's entry; the producer's entry ids."""
        if self._producer is None:
            raise self._no_producer()
        return await self._producer.invalidate(self._binding.ref(args, kwargs), reason=self._reason)


class SyncCached(_Cached[P, R]):
    """A sync function cached in a :class:`~cachebus.SyncCache` (made by ``SyncCache.cached``)."""

    def __init__(
        self,
        cache: SyncReads,
        fn: Callable[P, R],
        namespace: str,
        *,
        key: KeySpec = None,
        ttl: float | None = None,
        type: object = None,
        producer: SyncPublisher | None = None,
        reason: str = "",
        local: LocalCache | None = None,
    ) -> None:
        if inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"{getattr(fn, '__qualname__', fn)!r} is async: cache it with Cache.cached"
            )
        ns = cache._core.keyspace.namespace(namespace)
        super().__init__(fn, ns, key=key, ttl=ttl, type=type, reason=reason, local=local)
        self._cache = cache
        self._fn = fn
        self._producer = producer

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ref = self._binding.ref(args, kwargs)
        token, value = self._from_l1(ref)
        if value is _MISS:
            load = lambda: self._fn(*args, **kwargs)  # noqa: E731
            value = self._cache._fill(ref.namespace, ref.id, load, self.ttl, self._typed)
            self._to_l1(ref, value, token)
        return typing.cast(R, value)  # the loader's R, or a hit validated into R

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """Publish the invalidation of this call's entry; the producer's entry ids."""
        if self._producer is None:
            raise self._no_producer()
        return self._producer.invalidate(self._binding.ref(args, kwargs), reason=self._reason)
