"""FastStream's ``BinaryMessageFormatV1`` frame, read and written without importing FastStream.

FastStream >= 0.7 publishes one stream field, ``__data__``, holding::

    b"\\x89BIN\\r\\n\\x1a\\n"  u16 version (1)  u32 headers_start  u32 data_start
    at headers_start: u16 count, then count x (u16 len, key bytes, u16 len, value bytes)
    at data_start:    the body (JSON for pydantic models and dicts)

all big-endian. The reader checks every offset and length, because entries are untrusted: a
truncated or hostile frame raises :class:`FrameError`, never IndexError or struct.error.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["BINARY_MAGIC", "FrameError", "build_binary_frame", "parse_binary_frame"]

BINARY_MAGIC = b"\x89BIN\r\n\x1a\n"
_VERSION = 1
_FIXED = len(BINARY_MAGIC) + 2 + 4 + 4  # magic, version, two offsets
_MAX_HEADERS = 256
_U16 = struct.Struct(">H")
_OFFSETS = struct.Struct(">HII")


class FrameError(ValueError):
    """A binary frame is malformed; ``rule`` says how."""

    def __init__(self, message: str, rule: str = "frame.binary") -> None:
        super().__init__(message)
        self.rule = rule


def parse_binary_frame(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a frame that starts with :data:`BINARY_MAGIC`."""
    size = len(raw)
    if size < _FIXED + 2:
        raise FrameError(f"binary frame is {size} bytes long, shorter than its fixed header")
    version, headers_start, data_start = _OFFSETS.unpack_from(raw, len(BINARY_MAGIC))
    if version != _VERSION:
        raise FrameError(
            f"binary frame version {version} is not supported (only {_VERSION})",
            rule="frame.version",
        )
    if not _FIXED <= headers_start <= size - 2 or not headers_start + 2 <= data_start <= size:
        raise FrameError(
            f"binary frame offsets out of range (headers at {headers_start}, data at "
            f"{data_start}, frame of {size} bytes)"
        )
    (count,) = _U16.unpack_from(raw, headers_start)
    if count > _MAX_HEADERS:
        raise FrameError(f"binary frame declares {count} headers; at most {_MAX_HEADERS} read")
    headers: dict[str, str] = {}
    offset = headers_start + 2
    for _ in range(count):
        key, offset = _read_string(raw, offset, data_start)
        value, offset = _read_string(raw, offset, data_start)
        headers[key] = value
    return raw[data_start:], headers


def _read_string(raw: bytes, offset: int, end: int) -> tuple[str, int]:
    if offset + 2 > end:
        raise FrameError("binary frame header block is truncated")
    (length,) = _U16.unpack_from(raw, offset)
    offset += 2
    if offset + length > end:
        raise FrameError("binary frame header runs past the header block")
    try:
        return raw[offset : offset + length].decode("utf-8"), offset + length
    except UnicodeDecodeError:
        raise FrameError("binary frame header is not UTF-8") from None


def build_binary_frame(body: bytes, headers: Mapping[str, str]) -> bytes:
    """The frame FastStream would write (lengths in bytes, so non-ASCII headers survive)."""
    block = bytearray(_U16.pack(len(headers)))
    for key, value in headers.items():
        for text in (key.encode(), value.encode()):
            if len(text) > 0xFFFF:
                raise FrameError("a binary frame header is limited to 65535 bytes")
            block += _U16.pack(len(text)) + text
    headers_start = _FIXED
    data_start = headers_start + len(block)
    return BINARY_MAGIC + _OFFSETS.pack(_VERSION, headers_start, data_start) + bytes(block) + body
