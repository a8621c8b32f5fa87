"""A second process that PINGs Redis on its own raw socket, to see stalls as another client.

:func:`run` (started by ``bench scan`` in a subprocess) prints ``ready``, PINGs every ~0.5 ms and
records ``(send time, round trip)`` in nanoseconds (``time.monotonic_ns``, the same clock in
every process on Linux) until SIGTERM, then writes them to OUT as pairs of int64.
"""

from __future__ import annotations

import signal
import socket
import time
from array import array
from pathlib import Path

__all__ = ["read_samples", "run"]

_PING = b"*1\r\n$4\r\nPING\r\n"
_PONG = b"+PONG\r\n"


def run(host: str, port: int, out: Path, interval: float = 0.0005) -> None:
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    samples = array("q")
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("ready", flush=True)
        while not stop:
            sent = time.monotonic_ns()
            sock.sendall(_PING)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    stop = True
                    break
                reply += chunk
            if reply == _PONG:
                samples.append(sent)
                samples.append(time.monotonic_ns() - sent)
            time.sleep(interval)
    out.write_bytes(samples.tobytes())


def read_samples(path: Path) -> list[tuple[int, int]]:
    data = array("q")
    data.frombytes(path.read_bytes())
    return [(data[i], data[i + 1]) for i in range(0, len(data) - 1, 2)]
