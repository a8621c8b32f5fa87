"""``get_or_set``: the fill flow with stampede protection, written once for both facades.

Across processes, a Redis lease (``SET lease token NX PX``) elects one loader per key; the
others poll for the value for at most ``lease_wait``, then load for themselves without
caching. Within a process, the facades add a single-flight so one task or thread per key
runs this flow at all.

Correctness of the fill (:mod:`cachebus.core.leases`): the lease is taken *before* loading, and
the value is written by one Lua script that stores it only while the lease stands, so any
invalidation of the key during the load (exact, pattern or flush, local or applied by a
consumer) refuses the late fill, and the value is written under the generation the lease was
taken under. With ``refresh_ahead``, a hit older than that fraction of its TTL is reloaded by
the lease winner while every other caller keeps getting the current value (dogpile semantics).

When Redis is unavailable or the breaker is open, the caller still gets a value: the loader
runs and nothing is cached.

The flow yields :class:`~cachebus.core._io.Batch` (run it, send back the replies),
:class:`Pause` (sleep) or :data:`LOAD` (call the loader, send back its value or throw its
exception into the flow). Errors of a batch are thrown into the flow.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from cachebus.contracts.errors import BackendUnavailable, CodecError
from cachebus.core._core import CacheCore, Read
from cachebus.core._io import Batch, Pause, Step
from cachebus.core.leases import (
    FillOutcome,
    acquire_batch,
    fill_batch,
    parse_acquire,
    release_batch,
)
from cachebus.core.typed import ValueType, typed_read

__all__ = ["LOAD", "Flow", "Load", "Pause", "fill_flow", "single"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Load:
    pass


LOAD = Load()

Flow = Generator[Batch | Pause | Load, Any, T]


def single(batch: Batch) -> Step[list[Any]]:
    """A step of one batch, for drivers that run a flow's batches one at a time."""
    return (yield batch)


class _LoadState:
    __slots__ = ("loaded", "started", "value")

    def __init__(self) -> None:
        self.started = False
        self.loaded = False
        self.value: Any = None


def fill_flow(
    core: CacheCore,
    namespace: str,
    ident: str,
    ttl: float | None = None,
    typed: ValueType[Any] | None = None,
) -> Flow[Any]:
    """The flow of ``get_or_set(namespace, ident, loader)``. Validates before any I/O.

    With ``typed``, hits are validated into its type (one that does not validate is a miss)
    and loaded values are stored in its JSON form; the loader's own value is returned as is.
    """
    core.keyspace.key(namespace, ident)
    ttl_s = core.ttl_seconds(namespace, ttl)
    state = _LoadState()
    fill = _fill(core, namespace, ident, ttl_s, state, typed)
    return _degrading(core, fill, state)


def _degrading(core: CacheCore, flow: Flow[Any], state: _LoadState) -> Flow[Any]:
    try:
        return (yield from flow)
    except BackendUnavailable:
        if state.loaded:
            core.stats.skipped_writes += 1
            return state.value  # only the fill failed: the caller gets its value
        if state.started:
            raise  # the loader itself raised it: not ours to hide, nor to call twice
        core.stats.degraded_reads += 1
        return (yield from _load(core, state))


def _load(core: CacheCore, state: _LoadState) -> Flow[Any]:
    state.started = True
    value = yield LOAD
    state.value = value
    state.loaded = True
    core.stats.loads += 1
    return value


def _fresh(core: CacheCore, read: Read, ttl_s: float) -> bool:
    ahead = core.config.refresh_ahead
    return ahead is None or time.time() - read.written_at < ahead * ttl_s


def _fill(
    core: CacheCore,
    namespace: str,
    ident: str,
    ttl_s: float,
    state: _LoadState,
    typed: ValueType[Any] | None,
) -> Flow[Any]:
    cfg = core.config
    (read,) = yield from core.read_step(namespace, [ident])
    read = typed_read(core, read, typed)
    if read.hit and _fresh(core, read, ttl_s):
        return read.value
    refreshing = read.hit
    token = secrets.token_hex(16)
    lease_px = max(1, int(cfg.lease_ttl * 1000))
    deadline: float | None = None
    while True:
        replies = yield acquire_batch(
            core, namespace, ident, token, lease_px, int(time.time() * 1000)
        )
        acquired, generation_raw = parse_acquire(core, replies)
        if acquired:
            break
        if read.hit:
            # Another process is refreshing it: serve the value we have meanwhile.
            core.stats.served_while_refreshing += 1
            return read.value
        now = time.monotonic()
        if deadline is None:
            deadline = now + cfg.lease_wait
            core.stats.lease_waits += 1
        if now >= deadline:
            core.stats.lease_timeouts += 1
            return (yield from _load(core, state))  # not cached: the lease holder fills it
        yield Pause(min(cfg.lease_poll, deadline - now))
        (read,) = yield from core.read_step(namespace, [ident], count=False)
        read = typed_read(core, read, typed)
        if read.hit:
            return read.value
    found = yield from _filled_meanwhile(core, namespace, ident, token, typed, deadline)
    if found is not None:
        return found.value
    # The lease is ours, taken under generation_raw: only from here on may we load.
    try:
        value = yield from _load(core, state)
    except Exception:
        yield from _release(core, namespace, ident, token)
        raise
    if refreshing:
        core.stats.refreshes += 1
    try:
        stored = value if typed is None else typed.dump(value)
        prepared = core.codec.prepare(stored, namespace=namespace)
    except CodecError:
        core.stats.unstorable += 1  # the caller still gets its value; it is just not cached
        yield from _release(core, namespace, ident, token)
        return value
    generation = core.parse_generation(namespace, generation_raw)
    if generation < 0:
        yield from _release(core, namespace, ident, token)
        return value
    data = core.codec.frame(prepared, generation)
    px = max(1, int(ttl_s * 1000))
    outcome = (yield fill_batch(core, namespace, ident, token, generation_raw, data, px))[0]
    if outcome == FillOutcome.STORED:
        core.stats.sets += 1
    else:
        core.stats.refused_fills += 1  # invalidated, flushed, or the lease expired mid-load
    return value


def _filled_meanwhile(
    core: CacheCore,
    namespace: str,
    ident: str,
    token: str,
    typed: ValueType[Any] | None,
    waited: float | None,
) -> Flow[Read | None]:
    """The hit a waiter finds once it holds the lease (then released), or None.

    A caller that waited on another holder (``waited``: its deadline) may take the lease just
    after that holder stored its value and released it, between the caller's last poll and
    its acquire: it looks once more before loading a second time. A caller that never waited
    read a miss just before its acquire and skips the round trip.
    """
    if waited is None:
        return None
    (read,) = yield from core.read_step(namespace, [ident], count=False)
    read = typed_read(core, read, typed)
    if not read.hit:
        return None
    yield from _release(core, namespace, ident, token)
    return read


def _release(core: CacheCore, namespace: str, ident: str, token: str) -> Flow[None]:
    try:
        yield release_batch(core, namespace, ident, token)
    except BackendUnavailable:
        pass  # the lease expires by itself after lease_ttl
