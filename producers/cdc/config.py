"""The relay's settings (:class:`CdcConfig`) and what it counts (:class:`CdcStats`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cachebus.contracts.errors import ConfigError

__all__ = ["CdcConfig", "CdcStats"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class CdcConfig:
    dsn: str
    slot: str = "cachebus"
    publication: str = "cachebus"
    #: Create the publication (or add missing tables) and the slot when absent.
    create: bool = False
    #: Most transactions published in one MULTI/EXEC.
    max_batch: int = 500
    #: Above this many ids of one namespace in one transaction, flush the namespace instead.
    max_keys_per_transaction: int = 10_000
    #: A standby tries to take the slot this often (seconds).
    standby_retry_s: float = 1.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0
    #: Confirm the recorded position to PostgreSQL this often (seconds); an idle relay moves
    #: it to the server's WAL end, so writes to other tables do not pile up WAL behind it.
    idle_confirm_s: float = 1.0
    #: How often the slot's retained bytes and lag are read (seconds).
    metrics_interval_s: float = 5.0
    connect_timeout_s: int = 5

    def __post_init__(self) -> None:
        for what, name in (("slot", self.slot), ("publication", self.publication)):
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{what} name {name!r} must be a plain lower-case identifier "
                    "(letters, digits, '_'; at most 63)"
                )
        if self.max_batch < 1 or self.max_keys_per_transaction < 1:
            raise ConfigError("max_batch and max_keys_per_transaction must be positive")


@dataclass(slots=True)
class CdcStats:
    transactions: int = 0
    changes: int = 0
    events: int = 0
    #: Transactions read again after a crash and skipped (the Redis position covered them).
    skipped: int = 0
    gaps: int = 0
    last_gap: str = ""
    sessions: int = 0
    errors: int = 0
    #: True while another relay holds the slot and this one waits.
    standby: bool = False
    streaming: bool = False
    confirmed_lsn: int = 0
    retained_bytes: int = 0
    lag_bytes: int = 0
    last_error: str = ""
    gap_reasons: list[str] = field(default_factory=list)
