"""The in-process cache (L1): cachetools underneath, the same invalidation surface as Redis.

Fills are guarded like Redis fills are by leases: ``token = l1.reserve()`` before loading,
``l1.fill(ns, id, value, token)`` after; an invalidation of that id (or a pattern or flush
covering its namespace) in between voids the token and the late fill is refused. Without it a
reader that loaded an old value just before an invalidation would put it back just after.

One bounded TLRU cache per registered namespace (``maxsize`` entries each), an entry living
for its namespace's ``ttl_s`` (or the override in ``ttls``, or the ``ttl`` given to
:meth:`LocalCache.set`). A broadcast
consumer applies the stream's invalidations to it and calls :meth:`LocalCache.flush` when it
cannot prove it saw every event. Synchronous and thread-safe (one lock; every operation is
in-memory and short).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar, overload

from cachetools import LRUCache, TLRUCache

from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.contracts.names import KeyRef, glob_match, validate_id, validate_pattern
from cachebus.contracts.registry import Registry
from cachebus.core.typed import value_type

__all__ = ["LocalCache"]

T = TypeVar("T")
D = TypeVar("D")


class _Entry(NamedTuple):
    value: Any
    ttl: float


def _time_to_use(_key: str, entry: _Entry, now: float) -> float:
    return now + entry.ttl


class _Invalidated(LRUCache[tuple[str, str], int]):
    """When each recently invalidated id was invalidated; forgets the oldest, and remembers
    the newest forgotten time, so a fill older than that is refused (safe, never stale)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.floor = 0

    def popitem(self) -> tuple[tuple[str, str], int]:
        key, seq = super().popitem()
        self.floor = max(self.floor, seq)
        return key, seq


class LocalCache:
    """A bounded, TTL'd in-process cache keyed by ``(namespace, id)``."""

    def __init__(
        self,
        registry: Registry,
        *,
        maxsize: int = 10_000,
        ttls: Mapping[str, float] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ConfigError(f"LocalCache maxsize must be at least 1, got {maxsize}")
        overrides = dict(ttls or {})
        unknown = sorted(n for n in overrides if n not in registry)
        if unknown:
            raise ConfigError(f"LocalCache ttls name unregistered namespaces: {', '.join(unknown)}")
        bad = {n: v for n, v in overrides.items() if not isinstance(v, int | float) or v <= 0}
        if bad:
            raise ConfigError(f"LocalCache ttls must be positive seconds, got {bad}")
        self.registry = registry
        self.maxsize = maxsize
        self._ttl = {ns.name: float(overrides.get(ns.name, ns.ttl_s)) for ns in registry}
        self._caches: dict[str, TLRUCache[str, _Entry]] = {
            ns.name: TLRUCache(maxsize, ttu=_time_to_use, timer=timer) for ns in registry
        }
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.refused_fills = 0
        #: When set and false, :meth:`fill` refuses (counted): the owner of the L1 says its
        #: source may still be stale (``ConsumerService`` until its group has caught up).
        self.fill_gate: Callable[[], bool] | None = None
        # Fill guard: a counter that every invalidation advances, per id and per namespace.
        self._seq = 0
        self._key_seq = _Invalidated(max(4 * maxsize, 1024))
        self._ns_seq: dict[str, int] = {}

    def _cache(self, namespace: str) -> TLRUCache[str, _Entry]:
        try:
            return self._caches[namespace]
        except KeyError:
            self.registry.get(namespace)  # raises the registry's clear ContractError
            raise

    # ---- reads and writes -------------------------------------------------------------
    @overload
    def get(self, namespace: str, ident: str | int) -> object | None: ...
    @overload
    def get(self, namespace: str, ident: str | int, default: D) -> object | D: ...
    @overload
    def get(self, namespace: str, ident: str | int, *, type: type[T]) -> T | None: ...
    @overload
    def get(self, namespace: str, ident: str | int, default: D, *, type: type[T]) -> T | D: ...
    def get(
        self, namespace: str, ident: str | int, default: object = None, *, type: object = None
    ) -> Any:
        """The value, or ``default``; with ``type``, checked to be one (pydantic), else a miss."""
        cache = self._cache(namespace)
        key = validate_id(ident)
        with self._lock:
            entry = cache.get(key)
            if entry is None:
                self.misses += 1
                return default
            self.hits += 1
        if type is None:
            return entry.value
        ok, value = value_type(type).revive(entry.value)
        return value if ok else default

    def set(
        self, namespace: str, ident: str | int, value: Any, *, ttl: float | None = None
    ) -> None:
        cache = self._cache(namespace)
        key = validate_id(ident)
        seconds = self._ttl[namespace] if ttl is None else float(ttl)
        if seconds <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}")
        with self._lock:
            cache[key] = _Entry(value, seconds)

    def reserve(self) -> int:
        """A token to pass to :meth:`fill`: take it *before* loading the value."""
        with self._lock:
            return self._seq

    def fill(
        self,
        namespace: str,
        ident: str | int,
        value: Any,
        token: int,
        *,
        ttl: float | None = None,
    ) -> bool:
        """Store ``value`` unless the id was invalidated since ``token``; True if stored."""
        cache = self._cache(namespace)
        key = validate_id(ident)
        seconds = self._ttl[namespace] if ttl is None else float(ttl)
        if self.fill_gate is not None and not self.fill_gate():
            self.refused_fills += 1
            return False
        with self._lock:
            last = max(
                self._key_seq.get((namespace, key), 0),
                self._ns_seq.get(namespace, 0),
                self._key_seq.floor,
            )
            if last > token:
                self.refused_fills += 1
                return False
            cache[key] = _Entry(value, seconds)
            return True

    # ---- invalidation -----------------------------------------------------------------
    def _mark(self, namespace: str, key: str | None) -> None:
        self._seq += 1
        if key is None:
            self._ns_seq[namespace] = self._seq
        else:
            self._key_seq[(namespace, key)] = self._seq

    def _drop(self, cache: TLRUCache[str, _Entry], key: str) -> int:
        if key not in cache:
            return 0
        try:
            del cache[key]
        except KeyError:  # it expired between the check and the delete
            return 0
        return 1

    def invalidate_keys(self, namespace: str, ids: Iterable[str | int]) -> int:
        """Remove these ids; returns how many live entries were removed."""
        cache = self._cache(namespace)
        keys = [validate_id(i) for i in ids]
        with self._lock:
            for key in keys:
                self._mark(namespace, key)
            removed = sum(self._drop(cache, key) for key in keys)
        self.invalidations += removed
        return removed

    def invalidate_refs(self, refs: Iterable[KeyRef]) -> int:
        removed = 0
        with self._lock:
            for ref in refs:
                key = validate_id(ref.id)
                self._mark(ref.namespace, key)
                removed += self._drop(self._cache(ref.namespace), key)
        self.invalidations += removed
        return removed

    def invalidate_pattern(self, namespace: str, pattern: str) -> int:
        """Remove the ids matching a namespace-relative Redis glob (never a bare ``*``)."""
        cache = self._cache(namespace)
        validate_pattern(pattern)
        with self._lock:
            self._mark(namespace, None)  # ids being loaded are not in the cache to match
            doomed = [key for key in cache if glob_match(pattern, key)]
            removed = sum(self._drop(cache, key) for key in doomed)
        self.invalidations += removed
        return removed

    def flush_namespace(self, namespace: str) -> int:
        cache = self._cache(namespace)
        with self._lock:
            self._mark(namespace, None)
            cache.expire()
            removed = len(cache)
            cache.clear()
        self.invalidations += removed
        return removed

    def flush(self) -> int:
        """Empty every namespace (after a detected gap)."""
        with self._lock:
            return sum(self.flush_namespace(ns) for ns in self._caches)

    def __len__(self) -> int:
        with self._lock:
            for cache in self._caches.values():
                cache.expire()
            return sum(len(cache) for cache in self._caches.values())

    def __contains__(self, ref: object) -> bool:
        if not isinstance(ref, KeyRef):
            return False
        try:
            cache = self._cache(ref.namespace)
        except ContractError:
            return False
        with self._lock:
            return ref.id in cache
