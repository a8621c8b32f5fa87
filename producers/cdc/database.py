"""The PostgreSQL side of the relay, outside the stream: checks at start, slot and publication.

Everything here runs on an ordinary connection (psycopg2) before streaming starts, so a
refused configuration touches nothing: :func:`check_tables` reads the catalog only, and the
publication and slot are created only when asked (``create=True``).

A mapping works only if the rows PostgreSQL sends carry its key columns: a DELETE sends the
old row's replica identity (the primary key by default), an UPDATE the old identity only when
it changed. So every key column must be in the identity, or the table must be
``REPLICA IDENTITY FULL``; a column filter compares old and new values and needs FULL too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.tables import TableMapping, parse_table_name

__all__ = [
    "SlotInfo",
    "check_tables",
    "create_slot",
    "drop_slot",
    "ensure_publication",
    "format_lsn",
    "parse_lsn",
    "slot_info",
    "system_id",
]


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True, slots=True)
class SlotInfo:
    plugin: str
    active_pid: int | None
    #: ``reserved``, ``extended``, ``unreserved`` or ``lost`` (PostgreSQL 13+).
    wal_status: str
    confirmed_flush_lsn: int
    #: WAL bytes the slot keeps from being removed, and bytes not yet confirmed.
    retained_bytes: int
    lag_bytes: int
    #: The database the slot decodes (a slot belongs to one database of the cluster).
    database: str = ""


def _one(cur: Any, sql: str, args: Sequence[Any] = ()) -> Any:
    cur.execute(sql, args)
    return cur.fetchone()


def system_id(cur: Any) -> str:
    return str(_one(cur, "SELECT system_identifier FROM pg_control_system()")[0])


def slot_info(cur: Any, slot: str) -> SlotInfo | None:
    row = _one(
        cur,
        """SELECT plugin, active_pid, coalesce(wal_status, ''),
                  coalesce(confirmed_flush_lsn::text, '0/0'),
                  coalesce(pg_current_wal_lsn() - restart_lsn, 0)::bigint,
                  coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint,
                  coalesce(database, '')
           FROM pg_replication_slots WHERE slot_name = %s""",
        (slot,),
    )
    if row is None:
        return None
    return SlotInfo(
        row[0] or "", row[1], row[2], parse_lsn(row[3]), int(row[4]), int(row[5]), row[6]
    )


def create_slot(cur: Any, slot: str) -> int:
    """A new pgoutput slot; returns the LSN from which it decodes."""
    row = _one(
        cur, "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
    )
    return parse_lsn(row[0])


def drop_slot(cur: Any, slot: str) -> None:
    cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _identity(cur: Any, schema: str, table: str) -> tuple[str, set[str], set[str]] | None:
    """(replica identity, the table's columns, the identity's columns); None: no table."""
    row = _one(
        cur,
        """SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n
           ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s
           AND c.relkind IN ('r', 'p')""",
        (schema, table),
    )
    if row is None:
        return None
    oid, identity = row[0], row[1]
    cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
        (oid,),
    )
    columns = {r[0] for r in cur.fetchall()}
    which = "indisprimary" if identity == "d" else "indisreplident"
    cur.execute(
        f"""SELECT a.attname FROM pg_index i JOIN pg_attribute a
            ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s AND i.{which}""",
        (oid,),
    )
    return identity, columns, {r[0] for r in cur.fetchall()}


def check_tables(cur: Any, mappings: Iterable[TableMapping]) -> list[str]:
    """What keeps the mappings from working, one line each (empty: they all can)."""
    problems: list[str] = []
    seen: dict[str, tuple[str, set[str], set[str]] | None] = {}
    for mapping in mappings:
        table = mapping.table
        if table not in seen:
            seen[table] = _identity(cur, *parse_table_name(table))
        found = seen[table]
        if found is None:
            problems.append(f"{mapping.describe()}: the table {table} does not exist")
            continue
        identity, columns, ident_columns = found
        missing = [c for c in (*mapping.key_columns, *mapping.columns) if c not in columns]
        if missing:
            problems.append(
                f"{mapping.describe()}: {table} has no column {', '.join(missing)} "
                f"(its columns: {', '.join(sorted(columns))}); fix the key in the registry file"
            )
            continue
        fix = f"ALTER TABLE {table} REPLICA IDENTITY FULL;"
        if identity == "f":
            continue
        if mapping.columns:
            problems.append(
                f"{mapping.describe()}: a column filter compares the old and new rows, which "
                f"PostgreSQL sends only with REPLICA IDENTITY FULL; run: {fix}"
            )
            continue
        outside = [c for c in mapping.key_columns if c not in ident_columns]
        if identity == "n" or outside:
            have = ", ".join(sorted(ident_columns)) or "none: no primary key"
            what = (
                "REPLICA IDENTITY NOTHING"
                if identity == "n"
                else (f"its replica identity ({have}) lacks {', '.join(outside)}")
            )
            problems.append(
                f"{mapping.describe()}: a DELETE or key-changing UPDATE would not carry the old "
                f"key ({what}); run: {fix}"
            )
    return problems


def ensure_publication(
    cur: Any, publication: str, tables: Sequence[str], *, create: bool
) -> list[str]:
    """Problems with the publication (empty: it publishes every table); creates or extends
    it when ``create``."""
    exists = _one(cur, "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    quoted = ", ".join(tables)
    if exists is None:
        if not create:
            return [
                f"the publication {publication} does not exist: run with --create, or "
                f"CREATE PUBLICATION {publication} FOR TABLE {quoted};"
            ]
        cur.execute(f"CREATE PUBLICATION {publication} FOR TABLE {quoted}")
        return []
    cur.execute(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
        (publication,),
    )
    published = {r[0] for r in cur.fetchall()}
    absent = [t for t in tables if t not in published]
    if not absent:
        return []
    if not create:
        return [
            f"the publication {publication} lacks {', '.join(absent)}: run with --create, or "
            f"ALTER PUBLICATION {publication} ADD TABLE {', '.join(absent)};"
        ]
    cur.execute(f"ALTER PUBLICATION {publication} ADD TABLE {', '.join(absent)}")
    return []


def refuse(problems: list[str]) -> None:
    if problems:
        raise ConfigError("cachebus cdc cannot start:\n  " + "\n  ".join(problems))
