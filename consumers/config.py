"""Configuration of the consumer runtime: frozen values, defaults documented where they live."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import validate_name

__all__ = [
    "MAX_CLAIM_INTERVAL_S",
    "BroadcastConfig",
    "ConsumerConfig",
    "FlushReason",
    "default_claim_interval",
    "default_consumer_name",
]

#: The derived claim interval never exceeds this: a dead member's entries are applied by a
#: live member within ``min_idle_ms`` plus at most about one second (the claim round, then
#: the batch's apply and ack).
MAX_CLAIM_INTERVAL_S = 0.5


class FlushReason(StrEnum):
    """Why a consumer flushed the cache scope it guards. Every flush is counted by reason."""

    NEW_GROUP = "new_group"  # the group did not exist: it knows no history
    GROUP_LOST = "group_lost"  # NOGROUP: stream or group vanished (restart, eviction, deletion)
    EPOCH_CHANGED = "epoch_changed"  # another member recreated the group before we saw NOGROUP
    TRIMMED = "trimmed"  # entries were removed before this group read them
    POISON = "poison"  # an event was dead-lettered instead of applied
    STALE_BUDGET = "stale_budget"  # broadcast: disconnected longer than the staleness budget
    STREAM_LOST = "stream_lost"  # broadcast: the stream vanished or was recreated
    SERVER_CHANGED = "server_changed"  # the server's run_id changed and a check found a loss
    FAILOVER = "failover"  # cluster: another node serves the partition now (async replication)
    MANUAL = "manual"


def namespace_set(names: Collection[str], owner: str) -> frozenset[str]:
    """The namespaces as a frozenset; one name alone is refused (it would be its letters)."""
    if isinstance(names, str | bytes):
        raise ConfigError(
            f"{owner}(namespaces={names!r}): pass a collection of names, "
            f"such as namespaces={{{names!r}}}"
        )
    return frozenset(names)


def default_consumer_name(group: str) -> str:
    """A stable member name: the same process on the same host gets the same name back.

    Stability matters: a restarted member drains its own pending entries by name. Set
    ``CACHEBUS_CONSUMER`` (``--consumer``, or pass a name) where hostnames are not stable.
    """
    host = socket.gethostname().split(".")[0] or "host"
    ordinal = os.environ.get("CACHEBUS_CONSUMER_ORDINAL", "0")
    return f"{group}-{host}-{ordinal}"


def default_claim_interval(min_idle_ms: int) -> float:
    """The claim interval derived from ``min_idle_ms``: half of it, at most 0.5 s."""
    return min(MAX_CLAIM_INTERVAL_S, min_idle_ms / 2000.0)


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A service's consumer group on one invalidation stream.

    Timing defaults follow from each other: ``socket_timeout`` of the stream client (set it
    above ``block_ms``) never fires during a blocking read; a read never blocks past the next
    claim round, and the claim interval is derived from ``min_idle_ms`` unless given, so a
    member that died has its entries applied by a live one within ``min_idle_ms`` plus
    ``claim_interval_s`` (0.5 s at most by default) plus one batch.

    The command line and :class:`cachebus.settings.CachebusSettings` name every field the
    same way (``claim_interval_s`` is ``--claim-interval-s`` and ``CACHEBUS_CLAIM_INTERVAL_S``);
    ``group`` is the settings' ``service``.
    """

    #: Logical stream name (the Redis key is built by :class:`cachebus.contracts.keys.StreamKeys`).
    stream: str
    #: The consumer group: one per service.
    group: str
    #: This member's stable name (see :func:`default_consumer_name`).
    consumer: str = ""
    #: Namespaces this service caches; events for others are acked and ignored. Any collection
    #: of names (a set, a list, a tuple); kept as a frozenset.
    namespaces: Collection[str] = frozenset()
    #: Entries per XREADGROUP.
    read_count: int = 500
    #: How long a read blocks waiting for new entries (milliseconds).
    block_ms: int = 1000
    #: Entries idle longer than this in another member's pending list are claimed (milliseconds).
    min_idle_ms: int = 30_000
    #: How often the claimer runs XAUTOCLAIM (seconds); None: derived from ``min_idle_ms``
    #: (:func:`default_claim_interval`). At most ``min_idle_ms`` / 1000.
    claim_interval_s: float | None = None
    #: How often housekeeping runs: the server's run_id check, idle-member removal, the
    #: registry record, retention (seconds).
    housekeeping_interval_s: float = 5.0
    #: Entries per XAUTOCLAIM call.
    claim_count: int = 200
    #: An entry that fails this many times is dead-lettered and its scope flushed.
    max_deliveries: int = 5
    #: Members with no pending entries, idle longer than this, are removed (seconds; 0 = never).
    remove_idle_members_after_s: float = 3600.0
    #: Readiness is false while the group lags more than this many entries.
    lag_budget: int = 10_000
    #: Readiness is false after Redis has been unreachable this long (seconds).
    max_staleness_s: float = 5.0
    #: ``stop()``: time given to finish and ack the batch in flight, then the hard deadline.
    grace_period_s: float = 5.0
    hard_deadline_s: float = 10.0
    #: Backoff between attempts while Redis is unreachable (seconds, doubled up to the cap).
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    #: Pattern invalidations matching more keys than this escalate to a namespace flush.
    max_keys_per_pattern: int = 100_000
    #: Trim the stream to what every group has acked (MINID), at most once per interval.
    retention: bool = False
    retention_interval_s: float = 30.0
    #: Hard cap on stream length; trimming past a group here is a detected gap, never silent.
    max_stream_length: int = 1_000_000
    #: Groups idle (all members) longer than this are reported as retired (seconds).
    retired_group_after_s: float = 24 * 3600.0
    #: Event ids remembered to spare callbacks a duplicate delivered twice in a row.
    dedupe_window: int = 4096

    def __post_init__(self) -> None:
        validate_name(self.stream, "stream")
        validate_name(self.group, "group")
        if not self.consumer:
            object.__setattr__(self, "consumer", default_consumer_name(self.group))
        validate_name(self.consumer, "consumer")
        object.__setattr__(self, "namespaces", namespace_set(self.namespaces, "ConsumerConfig"))
        if not self.namespaces:
            raise ConfigError(
                f"consumer group {self.group!r} guards no namespace: pass the namespaces it caches"
            )
        if self.claim_interval_s is None:
            object.__setattr__(self, "claim_interval_s", default_claim_interval(self.min_idle_ms))
        wrong = [rule for rule, ok in self._rules().items() if not ok]
        if wrong:
            raise ConfigError(f"consumer configuration: {'; '.join(wrong)}")

    def _rules(self) -> dict[str, bool]:
        claim = self.claim_every_s
        min_idle_s = self.min_idle_ms / 1000.0
        return {
            "read_count must be at least 1": self.read_count >= 1,
            "claim_count must be at least 1": self.claim_count >= 1,
            "block_ms must be at least 1 (0 would block forever)": self.block_ms >= 1,
            "max_deliveries must be at least 1": self.max_deliveries >= 1,
            f"min_idle_ms ({self.min_idle_ms}) must exceed block_ms ({self.block_ms}), or live "
            "members get claimed": self.min_idle_ms >= self.block_ms,
            "claim_interval_s must be positive": claim > 0,
            f"claim_interval_s ({claim}) must not exceed min_idle_ms / 1000 ({min_idle_s}): a "
            f"dead member's entries would wait up to {min_idle_s + claim:g} s; leave it unset "
            f"to derive {default_claim_interval(self.min_idle_ms):g}": claim <= min_idle_s,
            "housekeeping_interval_s must be positive": self.housekeeping_interval_s > 0,
            "hard_deadline_s must not be shorter than grace_period_s": self.hard_deadline_s
            >= self.grace_period_s,
            "backoff_base_s must be positive and at most backoff_cap_s": 0
            < self.backoff_base_s
            <= self.backoff_cap_s,
            "dedupe_window must be at least 1": self.dedupe_window >= 1,
            "retention_interval_s must not be negative": self.retention_interval_s >= 0,
            "max_stream_length must be at least 1": self.max_stream_length >= 1,
        }

    @property
    def claim_every_s(self) -> float:
        """``claim_interval_s`` as set or derived (never None once built)."""
        claim = self.claim_interval_s
        return default_claim_interval(self.min_idle_ms) if claim is None else claim

    @property
    def claim_bound_s(self) -> float:
        """A dead member's entries are applied within this long after their last delivery
        (plus one batch's apply and ack)."""
        return self.min_idle_ms / 1000.0 + self.claim_every_s

    @property
    def socket_timeout_floor(self) -> float:
        """The stream client's socket timeout must exceed this (seconds)."""
        return self.block_ms / 1000.0 + 1.0


@dataclass(frozen=True, slots=True)
class BroadcastConfig:
    """Broadcast mode: every process reads every event, without a group, into its own L1."""

    stream: str
    namespaces: Collection[str] = field(default_factory=frozenset)
    read_count: int = 500
    block_ms: int = 1000
    #: Disconnected longer than this, the L1 is flushed and bypassed until caught up (seconds).
    max_staleness_s: float = 5.0
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    grace_period_s: float = 2.0
    dedupe_window: int = 4096

    def __post_init__(self) -> None:
        validate_name(self.stream, "stream")
        object.__setattr__(self, "namespaces", namespace_set(self.namespaces, "BroadcastConfig"))
        if not self.namespaces:
            raise ConfigError("a broadcast consumer guards no namespace: pass the namespaces")
        if self.block_ms < 1:
            raise ConfigError("block_ms must be at least 1 (0 would block forever)")
