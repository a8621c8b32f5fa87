"""Command-timed faults of the fault proxy (``FaultProxy(..., resp=True)``).

Each proxied connection keeps, in order, one slot per command it forwarded; Redis answers the
commands of a connection in order, so the n-th reply read from the server answers the n-th
command. A fault chosen for a command is carried in its slot and acts when the command is
about to be sent (``reset_before``) or when its reply comes back (the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cachebus.testing.resp import command_args, message_end

if TYPE_CHECKING:
    from cachebus.testing.proxy import FaultProxy

__all__ = ["CommandFault", "FaultAction", "RespConnection"]

FaultAction = Literal["reset_before", "hold_request", "reset_after", "drop_reply", "hold"]
_ON_REPLY = frozenset({"reset_after", "drop_reply", "hold"})


@dataclass(eq=False)
class CommandFault:
    """One armed fault. ``matched`` is set when a command was chosen, ``fired`` (and
    ``fired_at``) when the fault acted; for ``hold_request`` with ``then``, when ``then`` acted
    on the reply of the command after ``release()``."""

    name: bytes
    action: FaultAction
    when: Callable[[list[bytes]], bool] | None
    refuse_s: float
    times: int
    proxy: FaultProxy
    then: FaultAction | None = None
    matched: threading.Event = field(default_factory=threading.Event)
    fired: threading.Event = field(default_factory=threading.Event)
    fired_at: float | None = None  # time.monotonic()
    args: list[bytes] | None = None  # the command it acted on (the last one)

    def matches(self, args: list[bytes]) -> bool:
        if self.times <= 0 or not args or args[0].upper() != self.name:
            return False
        return self.when is None or self.when(args)

    @property
    def reply_action(self) -> FaultAction | None:
        action = self.then if self.action == "hold_request" else self.action
        return action if action in _ON_REPLY else None

    def fire(self) -> None:
        self.fired_at = time.monotonic()
        if self.refuse_s > 0:
            self.proxy.refuse_until = max(self.proxy.refuse_until, self.fired_at + self.refuse_s)
        self.fired.set()

    @property
    def healed_at(self) -> float | None:
        """When the fault is over: it fired, and its refusal window (if any) ended."""
        return None if self.fired_at is None else self.fired_at + self.refuse_s


class RespConnection:
    """One client connection through the proxy, read as RESP in both directions."""

    def __init__(
        self, proxy: FaultProxy, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.slots: deque[tuple[CommandFault | None, list[bytes]]] = deque()
        self.held: bytearray | None = None  # replies kept by a "hold" fault
        self.held_commands: bytearray | None = None  # commands kept by a "hold_request" fault
        self.swallowing = False  # a "drop_reply" fault fired: nothing more reaches the client
        self.client_closed = False

    # ---- client -> server -----------------------------------------------------------------
    async def pipe_commands(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    # The client closed: let the server run what it already has, as it would
                    # without a proxy (a FIN after the data, never a reset). Commands still
                    # held are sent at release(), then the FIN.
                    self.client_closed = True
                    if self.held_commands is None:
                        self.upstream.close()
                    return
                if not await self._passes():
                    if self.proxy.mode == "cut":
                        return self.abort()
                    continue
                buf += data
                out = bytearray()
                while buf:
                    end = _command_end(buf)
                    if end is None:
                        break
                    message = bytes(buf[:end])
                    del buf[:end]
                    args = command_args(message)
                    fault = self._fault_for(args)
                    if fault is not None and fault.action == "reset_before":
                        self._write(self.upstream, out)
                        fault.fire()
                        return self.abort()
                    self.slots.append((fault, args))
                    if fault is not None and fault.action == "hold_request":
                        self.held_commands = bytearray()
                        if fault.then is None:
                            fault.fire()
                    if self.held_commands is not None:
                        self.held_commands += message
                        self.proxy.commands_held.append(tuple(args))
                        continue
                    self.proxy.commands.append((time.monotonic(), tuple(args)))
                    out += message
                self._write(self.upstream, out)
                await self.upstream.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.abort()

    def _fault_for(self, args: list[bytes]) -> CommandFault | None:
        for fault in self.proxy.faults:
            if fault.matches(args):
                fault.times -= 1
                fault.args = args
                fault.matched.set()
                return fault
        return None

    # ---- server -> client -----------------------------------------------------------------
    async def pipe_replies(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    self.client.close()
                    return
                if not await self._passes():
                    if self.proxy.mode == "cut":
                        return self.abort()
                    continue
                buf += data
                out = bytearray()
                while buf:
                    end = message_end(buf)
                    if end is None:
                        break
                    message = bytes(buf[:end])
                    del buf[:end]
                    if not self._on_reply(message, out):
                        self._write(self.client, out)
                        return self.abort()
                self._write(self.client, out)
                await self.client.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.abort()

    def _on_reply(self, message: bytes, out: bytearray) -> bool:
        """Route one reply (to ``out``, the hold buffer, or nowhere); False: reset now."""
        if message.startswith(b">"):  # a RESP3 push answers no command
            out += message
            return True
        fault, _ = self.slots.popleft() if self.slots else (None, [])
        action = fault.reply_action if fault is not None else None
        if fault is not None and action is not None:
            fault.fire()
            if action == "reset_after":
                return False
            if action == "drop_reply":
                self.swallowing = True
            elif action == "hold" and self.held is None:
                self.held = bytearray()
        if self.swallowing:
            return True
        if self.held is not None:
            self.held += message
        else:
            out += message
        return True

    def release(self) -> None:
        commands, self.held_commands = self.held_commands, None
        if commands is not None:
            now = time.monotonic()
            self.proxy.commands += [(now, args) for args in self.proxy.commands_held]
            self.proxy.commands_held.clear()
            self._write(self.upstream, commands)
            if self.client_closed:
                self.upstream.close()
        held, self.held = self.held, None
        if held:
            self._write(self.client, held)

    # ---- both ------------------------------------------------------------------------------
    async def _passes(self) -> bool:
        if self.proxy.delay_s:
            await asyncio.sleep(self.proxy.delay_s)
        return self.proxy.mode == "pass"

    def _write(self, writer: asyncio.StreamWriter, data: bytes | bytearray) -> None:
        if data and not writer.is_closing():
            writer.write(bytes(data))

    def abort(self) -> None:
        self.proxy.forget(self.client, self.upstream)
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _command_end(buf: bytearray) -> int | None:
    if buf.startswith(b"*"):
        return message_end(buf)
    line_end = buf.find(b"\r\n")  # an inline command
    return None if line_end < 0 else line_end + 2
