"""A lean decoder of PostgreSQL's ``pgoutput`` messages (protocol version 1).

It reads only what the relay needs: Begin, Relation, Insert, Update, Delete, Truncate and
Commit; every other message (Type, Origin, logical messages) is skipped. Row values arrive as
text; a value is left as bytes and decoded only when it is part of an id or compared by a
column filter, which keeps the decoder close to the speed PostgreSQL hands changes out
(``cachebus bench cdc`` measures the ratio). What a change invalidates is decided by
:mod:`cachebus.producers.cdc.changes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cachebus.contracts.errors import CachebusError

__all__ = [
    "UNCHANGED",
    "Begin",
    "Change",
    "Commit",
    "DecodeError",
    "Relation",
    "Truncate",
    "Value",
    "decode",
    "pg_epoch_us_to_unix_ms",
]

#: A TOASTed value the update left unchanged: not sent, take it from the old row if known.
UNCHANGED = b"\x00unchanged"
Value = bytes | None

_U16 = struct.Struct(">H").unpack_from
_I32 = struct.Struct(">i").unpack_from
_U32 = struct.Struct(">I").unpack_from
_BEGIN = struct.Struct(">QqI").unpack_from
_COMMIT = struct.Struct(">BQQq").unpack_from
# Microseconds from the unix epoch to PostgreSQL's (2000-01-01).
_PG_EPOCH_US = 946_684_800_000_000


class DecodeError(CachebusError):
    """A pgoutput message this decoder cannot read (a protocol it does not speak)."""


def pg_epoch_us_to_unix_ms(us: int) -> int:
    return (us + _PG_EPOCH_US) // 1000


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_us: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_us: int


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    schema: str
    name: str
    #: ``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` an index.
    replica_identity: str
    columns: tuple[str, ...]
    #: Columns that are part of the replica identity (sent in a 'K' old row).
    identity: frozenset[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(slots=True)  # not frozen: a frozen init costs a quarter of the decode
class Change:
    """An insert (``old`` None), update, or delete (``new`` None) of a row of ``oid``.

    ``old_kind``: ``K`` (the identity columns only, others None), ``O`` (the full old row,
    REPLICA IDENTITY FULL) or empty when the old row was not sent.
    """

    kind: str
    oid: int
    old: list[Value] | None
    new: list[Value] | None
    old_kind: str = ""


@dataclass(frozen=True, slots=True)
class Truncate:
    oids: tuple[int, ...]


Message = Begin | Commit | Relation | Change | Truncate | None


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\x00", pos)
    return buf[pos:end].decode(), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[list[Value], int]:
    (count,) = _U16(buf, pos)
    pos += 2
    out: list[Value] = []
    append = out.append
    for _ in range(count):
        kind = buf[pos]
        pos += 1
        if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
            (length,) = _I32(buf, pos)
            pos += 4
            append(buf[pos : pos + length])
            pos += length
        elif kind == 0x6E:  # 'n' null
            append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            append(UNCHANGED)
        else:
            raise DecodeError(f"unknown tuple column kind {kind!r}")
    return out, pos


def _relation(buf: bytes) -> Relation:
    (oid,) = _U32(buf, 1)
    schema, pos = _string(buf, 5)
    name, pos = _string(buf, pos)
    identity = chr(buf[pos])
    (count,) = _U16(buf, pos + 1)
    pos += 3
    columns: list[str] = []
    keys: set[str] = set()
    for _ in range(count):
        flags = buf[pos]
        column, pos = _string(buf, pos + 1)
        pos += 8  # type oid, type modifier
        columns.append(column)
        if flags & 1:
            keys.add(column)
    return Relation(oid, schema, name, identity, tuple(columns), frozenset(keys))


def _update(buf: bytes) -> Change:
    (oid,) = _U32(buf, 1)
    marker = buf[5]
    old: list[Value] | None = None
    old_kind = ""
    pos = 6
    if marker == 0x4B or marker == 0x4F:  # 'K' / 'O'
        old_kind = chr(marker)
        old, pos = _tuple(buf, 6)
        pos += 1  # the 'N' that follows
    new, _ = _tuple(buf, pos)
    return Change("U", oid, old, new, old_kind)


def decode(buf: bytes) -> Message:
    """One pgoutput message; None for the kinds the relay does not need."""
    tag = buf[0]
    if tag == 0x49:  # 'I'
        (oid,) = _U32(buf, 1)
        new, _ = _tuple(buf, 6)
        return Change("I", oid, None, new)
    if tag == 0x55:  # 'U'
        return _update(buf)
    if tag == 0x44:  # 'D'
        (oid,) = _U32(buf, 1)
        old, _ = _tuple(buf, 6)
        return Change("D", oid, old, None, chr(buf[5]))
    if tag == 0x42:  # 'B'
        return Begin(*_BEGIN(buf, 1))
    if tag == 0x43:  # 'C'
        _flags, commit_lsn, end_lsn, commit_us = _COMMIT(buf, 1)
        return Commit(commit_lsn, end_lsn, commit_us)
    if tag == 0x52:  # 'R'
        return _relation(buf)
    if tag == 0x54:  # 'T'
        (count,) = _I32(buf, 1)
        return Truncate(tuple(_U32(buf, 6 + 4 * i)[0] for i in range(count)))
    if tag in b"YOM":  # type, origin, logical message
        return None
    raise DecodeError(f"unknown pgoutput message {chr(tag)!r}")
