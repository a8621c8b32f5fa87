"""RESP framing for the fault proxy: where one message ends, and a command's arguments.

Only framing: the proxy never interprets a reply, it only needs to know which reply answers
which command (Redis answers the commands of one connection in order; RESP3 push messages
answer none). RESP2 and RESP3 types are both understood.
"""

from __future__ import annotations

__all__ = ["command_args", "message_end"]

_LINE = frozenset(b"+-:_,#(")  # a value that is one line
_BLOB = frozenset(b"$!=")  # a length, then that many bytes
_AGGREGATE = frozenset(b"*~>")  # a count, then that many values
_PAIRS = frozenset(b"%|")  # a count, then twice that many values


def message_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The index just past the RESP value starting at ``pos``, or None if it is incomplete."""
    if pos >= len(buf):
        return None
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind = buf[pos]
    after = line_end + 2
    if kind in _LINE:
        return after
    if kind in _BLOB:
        length = int(buf[pos + 1 : line_end])
        if length < 0:
            return after  # a null bulk string
        end = after + length + 2
        return end if end <= len(buf) else None
    if kind in _AGGREGATE or kind in _PAIRS:
        count = int(buf[pos + 1 : line_end])
        if kind in _PAIRS:
            count *= 2
        for _ in range(max(count, 0)):
            next_pos = message_end(buf, after)
            if next_pos is None:
                return None
            after = next_pos
        return after
    raise ValueError(f"not RESP: type byte {bytes([kind])!r} at {pos}")


def command_args(message: bytes) -> list[bytes]:
    """The arguments of a command sent as a RESP array of bulk strings (as clients send)."""
    if not message.startswith(b"*"):
        return message.strip().split()  # an inline command
    args: list[bytes] = []
    line_end = message.find(b"\r\n")
    pos = line_end + 2
    for _ in range(int(message[1:line_end])):
        line_end = message.find(b"\r\n", pos)
        length = int(message[pos + 1 : line_end])
        start = line_end + 2
        args.append(message[start : start + length])
        pos = start + length + 2
    return args
