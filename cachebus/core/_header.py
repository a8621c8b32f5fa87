"""The stored-value header: its fields, their encoding, and the value types around it.

See :mod:`cachebus.core.codec` for the layout; this module only holds the pieces it is made of.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

__all__ = [
    "LEADS",
    "MAGIC",
    "COMPRESSIONS",
    "MIN_SIZE",
    "U32",
    "Compression",
    "DecodeFailure",
    "Decoded",
    "Prepared",
    "read_varint",
    "varint",
]

U32 = struct.Struct(">I")
MAGIC = 0xC0
MIN_SIZE = 1 + 1 + 4 + 4
_SMALL = [bytes((i,)) for i in range(0x80)]
LEADS = {
    (compression, is_json): bytes((MAGIC | compression << 1 | is_json,))
    for compression in (0, 1, 2)
    for is_json in (0, 1)
}


class Compression(IntEnum):
    RAW = 0
    ZSTD = 1
    ZSTD_DICT = 2


#: Compression by its header bits, without an enum call per read.
COMPRESSIONS = tuple(Compression)


class Decoded(NamedTuple):
    """A value read back, with what its header said (a tuple: built on every hit)."""

    value: Any
    generation: int
    written_at: int
    compression: Compression
    is_json: bool


class Prepared(NamedTuple):
    """A serialized, maybe compressed value waiting for its generation (``ValueCodec.frame``).

    ``lead`` is the start of the header (codec byte and dictionary id), ``size`` the
    serialized size. A tuple, not a dataclass: it is built once per write, on the hot path.
    """

    lead: bytes
    body: bytes
    size: int

    @property
    def compression(self) -> Compression:
        return Compression((self.lead[0] >> 1) & 0x07)


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a stored value could not be used. ``reason`` is one of ``corrupt``, ``oversize``,
    ``unknown_codec`` or ``unknown_dictionary``."""

    reason: str
    message: str


def varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    if pos < len(data) and data[pos] < 0x80:
        return data[pos], pos + 1
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise IndexError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise IndexError("varint longer than 10 bytes")
