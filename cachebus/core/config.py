"""Settings of the cache core: plain frozen values, checked when built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.registry import Namespace, Registry
from cachebus.core.dictionary import Dictionary
from cachebus.core.health import HealthThresholds

__all__ = ["BreakerConfig", "CacheConfig"]

_EMPTY: Mapping[str, Dictionary] = MappingProxyType({})
_NO_TTLS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When the circuit breaker opens: ``failures`` consecutive unavailable errors within
    ``window`` seconds open it for ``cooldown`` seconds; then one probe is let through."""

    failures: int = 5
    window: float = 10.0
    cooldown: float = 5.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= 0 or self.cooldown <= 0:
            raise ConfigError("breaker: failures >= 1, window > 0 and cooldown > 0 are required")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """How a :class:`~cachebus.core.Cache` stores, expires, guards and invalidates values.

    TTLs and compression are the registry's, per namespace (``ttl_s``, ``compression``,
    ``dictionary``); this object only overrides them for one cache (a test, a tighter service).
    """

    #: Per-namespace TTL overrides (whole seconds) over the registry's ``ttl_s``; every name
    #: must be a namespace of the cache's registry (checked when the cache is built).
    ttls: Mapping[str, int] = field(default_factory=lambda: _NO_TTLS)
    #: Namespaces whose hits restore their full TTL (GETEX PX, atomic, in the read's round
    #: trip; a superset of the audit's "extend when in the last half"): ``True`` every
    #: namespace, ``False`` none, or a set of names. It also overrides a shorter per-call
    #: ``ttl`` on the first hit: leave a namespace out for short-lived entries.
    adaptive_ttl: bool | frozenset[str] = True
    #: A value is a miss once older than this many TTLs since written, however often it is
    #: hit: adaptive TTL keeps hot keys, it must not keep them forever.
    adaptive_max_age: float = 4.0
    #: Values of at least this many bytes are zstd-compressed (level ``compression_level``).
    compress_threshold: int = 1024
    compression_level: int = 1
    #: Cap on a value's serialized (decompressed) size, on write and on read.
    max_value_bytes: int = 8 * 1024 * 1024
    #: Default zstd dictionary (``cachebus codec train``) for values from 64 bytes up to
    #: ``dictionary_max_bytes``; larger values get plain zstd (a dictionary gains little
    #: there and costs ~1.5x the time).
    dictionary: Dictionary | None = None
    dictionary_max_bytes: int = 4096
    #: Per-namespace dictionaries, over the registry's ``dictionary`` files and the default.
    namespace_dictionaries: Mapping[str, Dictionary] = field(default_factory=lambda: _EMPTY)
    #: Dictionaries accepted when reading only (values written before a dictionary rollout).
    decode_dictionaries: tuple[Dictionary, ...] = ()
    #: ``get_or_set``: a hit older than this fraction of its TTL is reloaded by one caller
    #: (holding the lease) while every other caller keeps getting it. ``None``: off.
    refresh_ahead: float | None = 0.8
    #: Redis lease of ``get_or_set`` (seconds): its expiry, how long others wait, poll period.
    lease_ttl: float = 5.0
    lease_wait: float = 2.0
    lease_poll: float = 0.02
    #: ``set`` reuses a namespace generation this process saw within this many seconds;
    #: older, it fetches it first (one more round trip). A stale one only hides the write.
    generation_max_age: float = 1.0
    #: SCAN COUNT of pattern invalidation, and keys per UNLINK (one round trip each).
    scan_count: int = 1000
    unlink_batch: int = 1000
    #: A pattern invalidation matching more keys stops and flushes the namespace instead.
    pattern_max_keys: int = 100_000
    #: Deletes (UNLINKed keys) per second this cache object may send, on average; ``None``:
    #: unlimited. Bursts of up to ``delete_burst`` keys (default: one second's worth) go at
    #: once. Invalidations wait rather than fail; flushes are one command and never wait.
    max_deletes_per_second: float | None = None
    delete_burst: int | None = None
    breaker: BreakerConfig | None = field(default_factory=BreakerConfig)
    health: HealthThresholds = field(default_factory=HealthThresholds)
    #: ``health()``: SCAN calls (COUNT ``scan_count``) spent sampling key counts.
    health_scan_calls: int = 20
    #: Round trips kept for the latency percentiles.
    latency_window: int = 2048

    def __post_init__(self) -> None:
        bad = {
            str(k): v
            for k, v in self.ttls.items()
            if type(v) is not int or v < 1 or not isinstance(k, str)
        }
        if bad:
            raise ConfigError(
                f"CacheConfig.ttls maps namespace names to whole seconds >= 1, got {bad}"
            )
        object.__setattr__(self, "ttls", MappingProxyType(dict(self.ttls)))
        object.__setattr__(
            self, "namespace_dictionaries", MappingProxyType(dict(self.namespace_dictionaries))
        )
        if not isinstance(self.adaptive_ttl, bool):
            object.__setattr__(self, "adaptive_ttl", frozenset(self.adaptive_ttl))
        checks = {
            "compress_threshold >= 1": self.compress_threshold >= 1,
            "compression_level between 1 and 22": 1 <= self.compression_level <= 22,
            "max_value_bytes >= 1": self.max_value_bytes >= 1,
            "dictionary_max_bytes >= 64": self.dictionary_max_bytes >= 64,
            "adaptive_max_age >= 1": self.adaptive_max_age >= 1,
            "refresh_ahead between 0 and 1 (or None)": self.refresh_ahead is None
            or 0 < self.refresh_ahead < 1,
            "lease_ttl > 0": self.lease_ttl > 0,
            "lease_wait >= 0": self.lease_wait >= 0,
            "lease_poll > 0": self.lease_poll > 0,
            "generation_max_age >= 0": self.generation_max_age >= 0,
            "scan_count between 10 and 100000": 10 <= self.scan_count <= 100_000,
            "unlink_batch between 1 and 10000": 1 <= self.unlink_batch <= 10_000,
            "pattern_max_keys >= 1": self.pattern_max_keys >= 1,
            "max_deletes_per_second > 0 (or None)": self.max_deletes_per_second is None
            or self.max_deletes_per_second > 0,
            "delete_burst >= 1 (or None)": self.delete_burst is None or self.delete_burst >= 1,
            "health_scan_calls >= 1": self.health_scan_calls >= 1,
            "latency_window >= 16": self.latency_window >= 16,
        }
        wrong = [rule for rule, ok in checks.items() if not ok]
        if wrong:
            raise ConfigError(f"CacheConfig: required {'; '.join(wrong)}")

    @property
    def effective_delete_burst(self) -> int:
        """``delete_burst``, or one second's worth of deletes (at least one key)."""
        if self.delete_burst is not None:
            return self.delete_burst
        return max(1, int(self.max_deletes_per_second or 1))

    def ttl_for(self, namespace: Namespace) -> int:
        """The namespace's TTL: this config's override, else the registry's ``ttl_s``."""
        return self.ttls.get(namespace.name, namespace.ttl_s)

    def adaptive(self, namespace: str) -> bool:
        if isinstance(self.adaptive_ttl, bool):
            return self.adaptive_ttl
        return namespace in self.adaptive_ttl

    def check_against(self, registry: Registry) -> None:
        """Every namespace this config names must be registered (ConfigError otherwise)."""
        named = {*self.ttls, *self.namespace_dictionaries}
        if not isinstance(self.adaptive_ttl, bool):
            named |= self.adaptive_ttl
        unknown = sorted(n for n in named if n not in registry)
        if unknown:
            raise ConfigError(
                f"CacheConfig names namespaces the registry lacks: {', '.join(unknown)} "
                f"(known: {', '.join(registry.names)})"
            )

    @property
    def dictionaries(self) -> Mapping[str | None, Dictionary]:
        """The codec's encode map: namespace -> dictionary, ``None`` -> the default."""
        out: dict[str | None, Dictionary] = {}
        out.update(self.namespace_dictionaries.items())
        if self.dictionary is not None:
            out[None] = self.dictionary
        return out
