"""The slot at the start of a session: in use (standby), missing, lost, recreated, or ready.

No silent gap: whenever changes may have been committed that no slot of ours kept (the slot
was invalidated by ``max_slot_wal_keep_size``, dropped, or dropped and recreated while the
relay was away), the session starts with a *gap*: the relay flushes every mapped namespace and
records why. A new slot is created *before* that flush, so every change after the flush is in
the slot. "Recreated" is seen from the relay's position in Redis: the slot is confirmed only
up to what Redis recorded, so a slot confirmed past it is not the one the relay fed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachebus.contracts.errors import ConfigError
from cachebus.producers.cdc import database as db
from cachebus.producers.cdc.publish import Position

__all__ = ["SlotReady", "prepare_slot"]


@dataclass(frozen=True, slots=True)
class SlotReady:
    #: Transactions ending at or before it were published (or lost in ``gap``).
    start: int
    #: Why every mapped namespace must be flushed first ("": no gap).
    gap: str = ""
    #: Another session streams from the slot: wait as a standby.
    active_pid: int | None = None


def prepare_slot(conn: Any, slot: str, position: Position | None, *, create: bool) -> SlotReady:
    """Check (and when needed drop and create) ``slot`` on the autocommit ``conn``."""
    cur = conn.cursor()
    info = db.slot_info(cur, slot)
    if info is not None and info.active_pid is not None:
        return SlotReady(0, active_pid=info.active_pid)
    why = ""
    if info is None:
        if position is not None:
            why = f"the slot {slot} was missing (dropped?): changes since were lost"
        elif not create:
            raise ConfigError(f"the replication slot {slot} does not exist: run with --create")
    elif info.plugin != "pgoutput":
        raise ConfigError(f"the slot {slot} uses {info.plugin}, not pgoutput")
    elif info.database != conn.info.dbname:
        raise ConfigError(
            f"the slot {slot} decodes the database {info.database}, not "
            f"{conn.info.dbname}: choose another --slot name"
        )
    elif info.wal_status == "lost":
        why = (
            f"the slot {slot} was invalidated by PostgreSQL (max_slot_wal_keep_size "
            "exceeded): changes since were lost"
        )
        db.drop_slot(cur, slot)
    elif position is not None and info.confirmed_flush_lsn > position.lsn:
        why = (
            f"the slot {slot} starts at {db.format_lsn(info.confirmed_flush_lsn)}, past what "
            f"was published ({db.format_lsn(position.lsn)}): recreated?"
        )
    if info is None or info.wal_status == "lost":
        start = db.create_slot(cur, slot)
    else:
        start = info.confirmed_flush_lsn
    if why or position is None:
        return SlotReady(start, why)
    return SlotReady(max(start, position.lsn))
