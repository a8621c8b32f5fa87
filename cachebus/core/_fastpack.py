"""Command packing with hiredis for asyncio connections.

redis-py's sync connections pack commands with ``hiredis.pack_command`` when hiredis is
installed, but its asyncio connections always pack in pure Python, and that dominates a
pipelined XADD or a large UNLINK (measured here: 9.2 µs vs 1.3 µs for one XADD, 3.9 ms vs
0.37 ms for an UNLINK of 2,000 keys). Our pools use these subclasses, which differ only in
``pack_command``; anything hiredis refuses goes through redis-py's own packer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio.connection as aconn

_hiredis_pack: Callable[..., bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis is a dependency; this only keeps a broken install working
    _hiredis_pack = None

__all__ = ["connection_class_for"]


class _FastPack:
    def pack_command(self, *args: Any) -> list[bytes]:
        encoder = self.encoder  # type: ignore[attr-defined]
        if (
            _hiredis_pack is None
            or encoder.encoding != "utf-8"
            or encoder.encoding_errors != "strict"
        ):
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]
        first = args[0]
        if isinstance(first, str):
            if " " in first:
                args = (*first.split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_hiredis_pack(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]


class FastPackConnection(_FastPack, aconn.Connection):
    pass


class FastPackSSLConnection(_FastPack, aconn.SSLConnection):
    pass


class FastPackUnixConnection(_FastPack, aconn.UnixDomainSocketConnection):
    pass


def connection_class_for(scheme: str) -> type[aconn.AbstractConnection]:
    if scheme == "rediss":
        return FastPackSSLConnection
    if scheme == "unix":
        return FastPackUnixConnection
    return FastPackConnection
