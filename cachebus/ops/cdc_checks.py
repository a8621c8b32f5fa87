"""``cachebus doctor --database``: the commit-log relay's replication slots.

A logical replication slot keeps every WAL segment since its confirmed position: a relay that
is stopped, stuck or retired without dropping its slot fills the database's disk. Checks:

* ``max_slot_wal_keep_size`` unset (-1): nothing bounds what a slot retains (warn);
* each logical slot: WAL retained past ``warn_bytes`` (warn), invalidated (``lost``: the relay
  flushes every mapped namespace and recreates it at its next start; warn), inactive (a
  relay is not running; ok while it retains little).
"""

from __future__ import annotations

from cachebus.ops._checks import Check, Level

__all__ = ["SLOT_WARN_BYTES", "slot_checks"]

#: Retained WAL past which a slot is a warning.
SLOT_WARN_BYTES = 1024**3


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def slot_checks(dsn: str, warn_bytes: int = SLOT_WARN_BYTES) -> list[Check]:
    """The findings for the database at ``dsn`` (one ``skip`` when it cannot be read)."""
    try:
        import psycopg2
    except ImportError:
        return [
            Check("cdc_slots", Level.SKIP, "needs the cdc extra", "pip install 'cachebus[cdc]'")
        ]
    try:
        conn = psycopg2.connect(dsn, connect_timeout=5)
    except psycopg2.Error as exc:
        return [Check("cdc_slots", Level.ERROR, f"cannot connect: {str(exc).strip()}",
                      "check --database (CACHEBUS_CDC_DATABASE_URL)")]  # fmt: skip
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_setting('max_slot_wal_keep_size')")
        keep = str((cur.fetchone() or ("-1",))[0])
        cur.execute(
            """SELECT slot_name, active, coalesce(wal_status, ''),
                      coalesce(pg_current_wal_lsn() - restart_lsn, 0)::bigint
               FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY slot_name"""
        )
        slots = cur.fetchall()
    finally:
        conn.close()
    checks = []
    if keep in ("-1", "-1MB"):
        checks.append(Check(
            "cdc_max_slot_wal_keep_size", Level.WARN,
            "unset (-1): a stopped relay's slot retains WAL until the disk is full",
            "set max_slot_wal_keep_size (e.g. '10GB'): past it PostgreSQL invalidates the "
            "slot and the relay flushes every mapped namespace instead of filling the disk",
        ))  # fmt: skip
    else:
        checks.append(Check("cdc_max_slot_wal_keep_size", Level.OK, keep))
    for name, active, status, retained in slots:
        state = "active" if active else "inactive (no relay reads it)"
        detail = f"{name}: {state}, retains {_size(int(retained))} of WAL"
        drop = f"SELECT pg_drop_replication_slot('{name}');"
        if status == "lost":
            checks.append(Check(
                f"cdc_slot:{name}", Level.WARN, f"{name}: invalidated by PostgreSQL (lost)",
                "the relay flushes every mapped namespace and recreates it when it starts; "
                f"a retired relay's slot: {drop}",
            ))  # fmt: skip
        elif int(retained) > warn_bytes:
            checks.append(Check(
                f"cdc_slot:{name}", Level.WARN, f"{detail} (over {_size(warn_bytes)})",
                f"start `cachebus cdc` (or see why it lags); a retired relay's slot: {drop}",
            ))  # fmt: skip
        else:
            checks.append(Check(f"cdc_slot:{name}", Level.OK, detail))
    return checks
