"""What a consistency check runs (:class:`CheckConfig`) and what it found (:class:`Report`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cachebus.contracts.errors import ConfigError

__all__ = ["FAULTS", "CheckConfig", "FaultRecord", "Report"]

#: The faults a check can inject, in the order they are spread over the run.
FAULTS = ("consumer_kill", "proxy_cut", "redis_restart")

ConsumerMode = Literal["subprocess", "inprocess"]
SourceKind = Literal["memory", "sqlite"]


@dataclass(frozen=True, slots=True)
class CheckConfig:
    """A bounded run: writers change a source of truth and publish invalidations, readers read
    through the cache, a consumer applies the stream, faults are injected; then quiescence and
    the comparison of every cached value with the source."""

    #: Seconds of load (writers and readers); quiescence and the final check come after.
    duration_s: float = 20.0
    #: Items of the source, ids ``g{group}:{n}`` in namespace ``positions``.
    keys: int = 500
    #: Groups of ids: a pattern invalidation covers one group (``g3:*``).
    groups: int = 25
    writers: int = 4
    #: Changes per second, all writers together.
    write_rate: float = 200.0
    readers: int = 8
    #: Reads per second, all readers together (each read is a get_or_set).
    read_rate: float = 1000.0
    #: Readers are spread over this many Cache instances (as if in several processes).
    reader_processes: int = 2
    #: Shares of changes invalidated by a pattern (a whole group) and by a namespace flush.
    pattern_share: float = 0.1
    flush_share: float = 0.005
    #: Share of reads and changes that go to the hot items, and the share of items that are hot.
    hot_share: float = 0.5
    hot_keys: float = 0.05
    #: After the load, change every item once more while readers still fill: the end state
    #: then shows how every item's last invalidation raced the fills in flight.
    final_sweep: bool = True
    #: A loader sleeps up to this long before and after reading the source: slow fills race.
    max_load_delay_s: float = 0.02
    #: The source of truth: an in-process dict (published directly) or SQLite (with the
    #: transactional outbox and a relay).
    source: SourceKind = "memory"
    consumer: ConsumerMode = "subprocess"
    faults: tuple[str, ...] = FAULTS
    #: How long a proxy cut lasts, and the consumer stays dead after its SIGKILL (seconds).
    cut_s: float = 2.0
    dead_s: float = 0.5
    #: Events created this long after a fault ended (the consumer back and reading) still
    #: count as "during a fault"; so do events created up to 1 s before it started.
    settle_s: float = 2.0
    #: Bound on waiting for every published event to be applied after the load stops.
    quiesce_timeout_s: float = 30.0
    #: An external Redis (no restart fault then); None starts a scratch redis-server.
    redis_url: str | None = None
    prefix: str = "cbcheck"
    seed: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ConfigError(f"unknown faults {sorted(unknown)}: choose from {', '.join(FAULTS)}")
        if self.duration_s <= 0 or self.keys < 1 or self.groups < 1 or self.keys < self.groups:
            raise ConfigError("duration_s > 0 and keys >= groups >= 1 are required")
        if self.writers < 1 or self.readers < 1 or self.reader_processes < 1:
            raise ConfigError("at least one writer, one reader and one reader process")
        if self.write_rate <= 0 or self.read_rate <= 0:
            raise ConfigError("write_rate and read_rate must be positive")
        if not (0 <= self.hot_share <= 1 and 0 < self.hot_keys <= 1):
            raise ConfigError("hot_share must be within 0-1 and hot_keys within (0, 1]")
        if not 0 <= self.pattern_share + self.flush_share <= 1:
            raise ConfigError("pattern_share + flush_share must be within 0-1")
        if self.source not in ("memory", "sqlite") or self.consumer not in (
            "subprocess",
            "inprocess",
        ):
            raise ConfigError("source is memory|sqlite and consumer is subprocess|inprocess")
        if "redis_restart" in self.faults and self.redis_url is not None:
            raise ConfigError(
                "redis_restart needs a scratch redis-server: drop --redis-url or the fault"
            )


@dataclass(frozen=True, slots=True)
class FaultRecord:
    name: str
    started_s: float  # since the load started
    ended_s: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """What the check measured. ``passed``: nothing lost and nothing stale after quiescence."""

    duration_s: float
    writes: int
    reads: int
    events: int
    applied: int
    covered_by_flush: int
    lost: int
    unpublished: int
    keys_checked: int
    keys_cached: int
    stale_after_quiescence: int
    reads_stale_over_1s: int
    within_1s: float | None
    within_1s_steady: float | None
    steady_events: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    quiescence_s: float
    flushes: dict[str, int] = field(default_factory=dict)
    faults: tuple[FaultRecord, ...] = ()
    cache: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: Goal for the share of invalidations applied within 1 s outside fault windows.
    within_1s_goal: float = 0.9999

    @property
    def passed(self) -> bool:
        return self.stale_after_quiescence == 0 and self.lost == 0 and self.unpublished == 0

    @property
    def within_1s_goal_met(self) -> bool | None:
        if self.within_1s_steady is None:
            return None
        return self.within_1s_steady >= self.within_1s_goal

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["faults"] = [asdict(f) for f in self.faults]
        out["passed"] = self.passed
        out["within_1s_goal_met"] = self.within_1s_goal_met
        return out
