"""A small asyncio TCP proxy that tests put between a client and Redis to inject faults.

No Toxiproxy, netem or iptables exist on these machines, so faults on the wire come from here:

* ``cut()``       close every connection now and refuse new ones until ``heal()``;
* ``blackhole()`` accept connections but forward nothing, in either direction (a silent
  partition: clients see timeouts, not resets);
* ``delay(ms)``   forward everything ``ms`` milliseconds late;
* ``heal()``      forward normally again.

With ``resp=True`` the proxy also reads the Redis protocol, so a fault can be timed against one
chosen command instead of landing at random (see :mod:`cachebus.testing.faults`):

* ``on_command(name, action, ...)`` acts on the next command(s) named ``name`` (and matching
  ``when``): ``"reset_before"`` resets the connection instead of sending it (the server never
  runs it); ``"hold_request"`` keeps it (and every later command of that connection) until
  ``release()``; ``"reset_after"`` lets the server run it and resets the connection instead of
  forwarding its reply; ``"drop_reply"`` swallows its reply and every later one on that
  connection (the client times out); ``"hold"`` keeps its reply and every later one until
  ``release()``. ``refuse_s`` then refuses new connections for that long.
* ``refuse(seconds)`` refuses new connections for that long (existing ones go on);
* ``commands`` logs every command forwarded, for tests to count (``count(name, ...)``).

The proxy runs its own event loop in a daemon thread, so sync and async tests drive it the same
way, and a test's own loop being blocked never stalls the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cachebus.testing.faults import CommandFault, FaultAction, RespConnection

__all__ = ["CommandFault", "FaultAction", "FaultProxy", "ProxyMode"]

ProxyMode = Literal["pass", "cut", "blackhole"]
T = TypeVar("T")


class FaultProxy:
    def __init__(
        self, target_host: str, target_port: int, *, listen_port: int = 0, resp: bool = False
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._listen_port = listen_port
        self.port = 0
        self.mode: ProxyMode = "pass"
        self.delay_s = 0.0
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.resp = resp
        self.faults: list[CommandFault] = []
        #: (monotonic time, arguments) of every command forwarded (with ``resp=True``).
        self.commands: list[tuple[float, tuple[bytes, ...]]] = []
        self.commands_held: list[tuple[bytes, ...]] = []  # kept by a "hold_request" fault
        self.refuse_until = 0.0  # time.monotonic(); new connections are reset before it
        self.connections_refused = 0
        self._resp_conns: set[RespConnection] = set()

    # ---- control (any thread) ------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def url_for(self, url: str) -> str:
        """Rewrite a redis URL (auth, db and query kept) so it goes through this proxy."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def cut(self) -> None:
        self._call(self._set_mode("cut"))

    def blackhole(self) -> None:
        self._call(self._set_mode("blackhole"))

    def delay(self, ms: float) -> None:
        self.delay_s = max(0.0, ms / 1000.0)

    def heal(self) -> None:
        self.delay_s = 0.0
        self.refuse_until = 0.0
        self._call(self._set_mode("pass"))

    def refuse(self, seconds: float) -> None:
        """Reset every new connection for ``seconds`` (the ones open now go on)."""
        self.refuse_until = time.monotonic() + seconds

    def on_command(
        self,
        name: str,
        action: FaultAction,
        *,
        when: Callable[[list[bytes]], bool] | None = None,
        refuse_s: float = 0.0,
        times: int = 1,
        then: FaultAction | None = None,
    ) -> CommandFault:
        """Act on the next ``times`` commands named ``name`` for which ``when(args)`` holds.

        ``then`` (with ``"hold_request"``): what to do with the reply once the held command
        was released and run (``"reset_after"``: the server ran it, the client never hears).
        """
        if not self.resp:
            raise RuntimeError("on_command needs FaultProxy(..., resp=True)")
        fault = CommandFault(name.upper().encode(), action, when, refuse_s, times, self, then)
        self._call(self._add_fault(fault))
        return fault

    def release(self) -> None:
        """Send what ``"hold_request"`` and ``"hold"`` faults kept (commands to the server,
        replies to the client), in order."""
        self._call(self._release())

    def count(self, name: str, when: Callable[[list[bytes]], bool] | None = None) -> int:
        """How many commands named ``name`` (and matching ``when``) were forwarded so far."""
        wanted = name.upper().encode()
        return sum(
            1
            for _, args in list(self.commands)
            if args and args[0].upper() == wanted and (when is None or when(list(args)))
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # ---- inside the proxy loop ----------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _add_fault(self, fault: CommandFault) -> None:
        self.faults.append(fault)

    async def _release(self) -> None:
        for conn in list(self._resp_conns):
            conn.release()

    def refusing(self) -> bool:
        return time.monotonic() < self.refuse_until

    async def _set_mode(self, mode: ProxyMode) -> None:
        self.mode = mode
        if mode == "cut":
            self._abort_all()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self.mode == "cut" or self.refusing():
            self.connections_refused += 1
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        pair = (writer, up_writer)
        if self.resp:
            conn = RespConnection(self, writer, up_writer)
            self._resp_conns.add(conn)
            t1 = asyncio.ensure_future(conn.pipe_commands(reader))
            t2 = asyncio.ensure_future(conn.pipe_replies(up_reader))
            t2.add_done_callback(lambda _: self._resp_conns.discard(conn))
        else:
            t1 = asyncio.ensure_future(self._pipe(reader, up_writer, pair))
            t2 = asyncio.ensure_future(self._pipe(up_reader, writer, pair))
        for task in (t1, t2):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def forget(self, *writers: asyncio.StreamWriter) -> None:
        for w in writers:
            self._writers.discard(w)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.mode == "blackhole":
                    continue  # swallow: the peer waits until its own timeout
                if self.mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in pair:
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()
