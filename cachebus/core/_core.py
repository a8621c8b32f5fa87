"""State, failure policy and read/write steps shared by :class:`Cache` and :class:`SyncCache`.

Both facades hold a :class:`CacheCore` and differ only in how they drive its steps
(``run_async`` or ``run_sync``). Everything that decides something lives here or in the step
modules next to it (``invalidation``, ``fill``, ``_probe``).

Generations: a namespace's generation lives at ``keyspace.generation_key(ns)`` and every
value carries, in its header, the generation it was written under. A read fetches the
generation and the values in one round trip (``MGET gen key...``, or ``GET gen`` + ``GETEX``
for adaptive TTL) and treats a value from another generation as a miss, so after
``flush_namespace`` (one INCR) no reader sees a value from before the flush. The issue asked
for keys that embed the generation; the header form gives the same guarantee and lets a
consumer UNLINK exact keys without first reading the generation.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachebus.contracts.errors import CircuitOpenError, ConfigError
from cachebus.contracts.keys import KeySpace
from cachebus.core._io import Batch, Script, Step
from cachebus.core.breaker import CircuitBreaker
from cachebus.core.codec import DecodeFailure, Prepared, ValueCodec
from cachebus.core.config import CacheConfig
from cachebus.core.dictionary import Dictionary, registry_dictionaries
from cachebus.core.ratelimit import DeleteRateLimiter
from cachebus.core.stats import CacheStats, LatencyWindow

__all__ = ["ENSURE_GENERATION", "CacheCore", "Kind", "Read"]

logger = logging.getLogger("cachebus.core")


class Kind(enum.Enum):
    """What an operation is, which decides what the breaker and outages do to it."""

    READ = "read"  # degrades to a miss
    WRITE = "write"  # degrades to a no-op
    INVALIDATE = "invalidate"  # never degrades: raises
    FLOW = "flow"  # get_or_set: raises into the flow, which falls back to the loader
    ADMIN = "admin"  # health, flush: raises


@dataclass(frozen=True, slots=True)
class Read:
    hit: bool
    value: Any = None
    generation: int = 0
    written_at: int = 0


#: The generation, created at ARGV[1] (the current time in ms, as a flush would) if missing.
ENSURE_GENERATION = Script(
    """
local gen = redis.call('GET', KEYS[1])
if not gen then
  gen = ARGV[1]
  redis.call('SET', KEYS[1], gen)
end
return gen
"""
)

_MISS_OF = {"corrupt", "oversize", "unknown_codec", "unknown_dictionary"}


class CacheCore:
    def __init__(self, keyspace: KeySpace, config: CacheConfig, where: str = "Redis") -> None:
        registry = keyspace.registry
        config.check_against(registry)
        self.keyspace = keyspace
        self.config = config
        self.where = where
        dictionaries: dict[str | None, Dictionary] = {}
        dictionaries.update(registry_dictionaries(registry))
        dictionaries.update(config.dictionaries)
        self.codec = ValueCodec(
            compress_threshold=config.compress_threshold,
            level=config.compression_level,
            max_value_bytes=config.max_value_bytes,
            dictionaries=dictionaries,
            decode_only=config.decode_dictionaries,
            dictionary_max_bytes=config.dictionary_max_bytes,
            uncompressed=frozenset(ns.name for ns in registry if ns.compression == "none"),
        )
        #: Per namespace: TTL in seconds, and whether hits restore it (adaptive TTL).
        self._ttls = {ns.name: config.ttl_for(ns) for ns in registry}
        self._adaptive = {ns.name: config.adaptive(ns.name) for ns in registry}
        self.stats = CacheStats(latency=LatencyWindow(config.latency_window))
        self.breaker = CircuitBreaker(config.breaker, name=where) if config.breaker else None
        self._generations: dict[str, tuple[int, float]] = {}
        self.delete_limiter: DeleteRateLimiter | None = None
        if config.max_deletes_per_second is not None:
            self.delete_limiter = DeleteRateLimiter(
                config.max_deletes_per_second, config.effective_delete_burst
            )
        #: (evicted_keys, monotonic time) at the last health(), for the eviction rate.
        self.eviction_sample: tuple[int, float] | None = None
        #: On a Redis Cluster a script may only touch keys of one slot (see leases.py).
        self.cluster = False

    # ---- failure policy ---------------------------------------------------------------
    def admit(self, kind: Kind) -> bool:
        """May this operation go to Redis? False: the caller returns its fallback."""
        if self.breaker is None or self.breaker.allow():
            return True
        if kind is Kind.READ:
            self.stats.degraded_reads += 1
            return False
        if kind is Kind.WRITE:
            self.stats.skipped_writes += 1
            return False
        if kind is Kind.INVALIDATE:
            self.stats.rejected_invalidations += 1
        raise CircuitOpenError(
            f"circuit to {self.where} is open after repeated failures; Redis was not tried "
            f"(next probe in {self.breaker.retry_in():.1f}s)"
        )

    def succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.success()

    def failed(self, kind: Kind, exc: BaseException) -> None:
        """Redis was unavailable: count, tell the breaker, raise unless the kind degrades."""
        self.stats.backend_errors += 1
        if self.breaker is not None:
            self.breaker.failure()
        if kind is Kind.READ:
            self.stats.degraded_reads += 1
            return
        if kind is Kind.WRITE:
            self.stats.skipped_writes += 1
            return
        raise exc

    def abandoned(self) -> None:
        """The operation ended without an answer either way (cancelled, bad input)."""
        if self.breaker is not None:
            self.breaker.abandon()

    def reserve_deletes(self, count: int) -> float:
        """Seconds to wait before deleting ``count`` keys (0.0 without a rate limit)."""
        if self.delete_limiter is None:
            return 0.0
        wait = self.delete_limiter.reserve(count)
        if wait > 0:
            self.stats.delete_waits += 1
            self.stats.delete_wait_ms += int(wait * 1000)
        return wait

    def observe(self, seconds: float) -> None:
        self.stats.latency.record(seconds)

    # ---- TTLs and generations -------------------------------------------------------
    def ttl_seconds(self, namespace: str, ttl: float | None = None) -> float:
        if ttl is not None:
            if ttl <= 0:
                raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}")
            return float(ttl)
        ttl_s = self._ttls.get(namespace)
        if ttl_s is None:
            self.keyspace.namespace(namespace)  # raises namespace.unknown
        return float(self._ttls[namespace])

    def known_generation(self, namespace: str) -> int | None:
        seen = self._generations.get(namespace)
        if seen is None or time.monotonic() - seen[1] > self.config.generation_max_age:
            return None
        return seen[0]

    def remember_generation(self, namespace: str, generation: int) -> None:
        """Remember ``generation`` unless a newer one is already known.

        Replies arrive out of order (a read that began before a flush, or two scopes' flushes
        running concurrently on one cache): a generation only grows, so an older one arriving
        last must not replace the newer, or every value written meanwhile would carry a
        generation already behind the key (misses for everyone). An expired memory is
        replaced by whatever comes, so a generation key reset lower heals within the max age.
        """
        now = time.monotonic()
        seen = self._generations.get(namespace)
        fresh = seen is not None and now - seen[1] <= self.config.generation_max_age
        if fresh and seen is not None and generation < seen[0]:
            return
        self._generations[namespace] = (generation, now)

    def parse_generation(self, namespace: str, raw: Any) -> int:
        """The generation from its key's value; -1 (every value a miss) if it is not ours.

        A missing key reads as 0 but is not remembered: writes create the key (see
        :meth:`write_step`), so no value is ever written under generation 0, and a generation
        key lost after a flush cannot bring values written before it back.
        """
        if raw is None:
            return 0
        try:
            generation = int(raw)
        except (TypeError, ValueError):
            logger.warning(
                "generation key of %r holds %r, not an integer: every read misses until "
                "flush_namespace(%r) repairs it",
                namespace,
                raw,
                namespace,
            )
            return -1
        self.remember_generation(namespace, generation)
        return generation

    # ---- reads ------------------------------------------------------------------------
    def read_step(
        self, namespace: str, ids: Sequence[str], *, count: bool = True
    ) -> Step[list[Read]]:
        keys = [self.keyspace.key(namespace, i) for i in ids]  # validates before any I/O
        gen_key = self.keyspace.generation_key(namespace)
        ttl = self._ttls[namespace]  # keys were checked by keyspace.key() above
        return self._read(
            namespace, gen_key, keys, ttl if self._adaptive[namespace] else None, count
        )

    def _read(
        self, namespace: str, gen_key: str, keys: list[str], adaptive_ttl: int | None, count: bool
    ) -> Step[list[Read]]:
        if adaptive_ttl is not None:
            # GETEX restores the full TTL atomically with the read: no TTL-then-EXPIRE race.
            px = adaptive_ttl * 1000
            calls = [("GET", gen_key), *(("GETEX", key, "PX", px) for key in keys)]
            replies = yield Batch(calls, operation=f"GETEX {namespace}", raise_on_error=False)
            if isinstance(replies[0], Exception):
                raise replies[0]
            gen_raw, raws = replies[0], replies[1:]
        else:
            (values,) = yield Batch([("MGET", gen_key, *keys)], operation=f"MGET {namespace}")
            gen_raw, raws = values[0], values[1:]
        generation = self.parse_generation(namespace, gen_raw)
        max_age = self.config.adaptive_max_age * adaptive_ttl if adaptive_ttl else None
        now = time.time()
        results: list[Read] = []
        doomed: list[str] = []
        for key, raw in zip(keys, raws, strict=True):
            read, delete = self._judge(raw, generation, now, max_age)
            results.append(read)
            if delete:
                doomed.append(key)
            if count:
                self.stats.count("hits" if read.hit else "misses")
        if doomed:
            # Unusable values go now rather than by TTL (adaptive TTL would keep them alive).
            yield Batch([("UNLINK", *doomed)], operation=f"UNLINK unusable {namespace} values")
        return results

    def _judge(
        self, raw: Any, generation: int, now: float, max_age: float | None
    ) -> tuple[Read, bool]:
        if raw is None:
            return Read(False, generation=generation), False
        if isinstance(raw, Exception):  # WRONGTYPE: something that is not ours sits there
            self.stats.corrupt += 1
            return Read(False, generation=generation), True
        decoded = self.codec.try_decode(raw)
        if isinstance(decoded, DecodeFailure):
            self.stats.count(decoded.reason if decoded.reason in _MISS_OF else "corrupt")
            return Read(False, generation=generation), decoded.reason != "unknown_dictionary"
        if generation < 0:
            self.stats.stale += 1
            return Read(False, generation=generation), False
        if decoded.generation != generation or (
            max_age is not None and now - decoded.written_at > max_age
        ):
            self.stats.stale += 1
            return Read(False, generation=generation), True
        return Read(True, decoded.value, generation, decoded.written_at), False

    # ---- writes -----------------------------------------------------------------------
    def write_step(
        self, namespace: str, items: Sequence[tuple[str, Any]], ttl: float | None = None
    ) -> Step[int]:
        """Serialize, compress and validate everything first: bad input raises before I/O."""
        px = max(1, int(self.ttl_seconds(namespace, ttl) * 1000))
        prepared = [
            (self.keyspace.key(namespace, ident), self.codec.prepare(value, namespace=namespace))
            for ident, value in items
        ]
        return self._write(namespace, prepared, px)

    def _write(self, namespace: str, items: list[tuple[str, Prepared]], px: int) -> Step[int]:
        if not items:
            return 0
        generation = self.known_generation(namespace)
        if generation is None:
            gen_key = self.keyspace.generation_key(namespace)
            floor = int(time.time() * 1000)
            (raw,) = yield Batch(
                [ENSURE_GENERATION.call([gen_key], [floor])], operation=f"generation {gen_key}"
            )
            generation = self.parse_generation(namespace, raw)
        if generation < 0:
            self.stats.skipped_writes += len(items)
            return 0
        now = time.time()
        calls = [
            ("SET", key, self.codec.frame(prep, generation, now=now), "PX", px)
            for key, prep in items
        ]
        yield Batch(calls, operation=f"SET {namespace}")
        self.stats.sets += len(items)
        return len(items)
