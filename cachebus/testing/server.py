"""Start and control local ``redis-server`` processes: for tests, benchmarks and the demo.

Every process is started by us, tracked by pid, and ended by pid: :meth:`RedisServer.stop`
(SIGTERM, then SIGKILL after a bound) or :meth:`RedisServer.kill` (SIGKILL). An ``atexit`` hook
ends whatever is still running when the interpreter exits, so an aborted test run leaves no
server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import redis
import redis.asyncio

__all__ = [
    "Persistence",
    "RedisServer",
    "ServerOptions",
    "TLSFiles",
    "find_redis_server",
    "free_port",
]

Persistence = Literal["none", "aof-always", "aof-everysec"]

_LIVE: dict[int, RedisServer] = {}
_LIVE_LOCK = threading.Lock()


def _end_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE.values())
    for server in servers:
        server.kill()


atexit.register(_end_all)


def find_redis_server() -> str | None:
    """Path of the local ``redis-server`` binary, or None."""
    return os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")


def free_port(highest: int = 65535) -> int:
    """A loopback TCP port, at most ``highest``, that was free a moment ago (the caller
    retries if it is taken)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= highest:
            return port


#: A cluster node also listens on port + 10000, so its port must be at most 55535.
_CLUSTER_HIGHEST_PORT = 55535


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How to start a redis-server. Defaults: no persistence, no memory cap, no auth."""

    persistence: Persistence = "none"
    maxmemory: str | None = None
    maxmemory_policy: str | None = None
    aclfile: Path | None = None
    requirepass: str | None = None
    tls: TLSFiles | None = None
    cluster: bool = False
    cluster_node_timeout_ms: int = 1000
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def args(self, port: int) -> list[str]:
        args = ["--bind", "127.0.0.1", "--save", "", "--protected-mode", "no"]
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(port)]
        if self.persistence == "none":
            args += ["--appendonly", "no"]
        else:
            fsync = "always" if self.persistence == "aof-always" else "everysec"
            args += ["--appendonly", "yes", "--appendfsync", fsync]
        if self.maxmemory is not None:
            args += ["--maxmemory", self.maxmemory]
        if self.maxmemory_policy is not None:
            args += ["--maxmemory-policy", self.maxmemory_policy]
        if self.aclfile is not None:
            args += ["--aclfile", str(self.aclfile)]
        if self.requirepass is not None:
            args += ["--requirepass", self.requirepass]
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.cluster_node_timeout_ms),
            ]  # fmt: skip
        for name, value in self.extra:
            args += [f"--{name}", value]
        return args


class RedisServer:
    """One ``redis-server`` process on a loopback port, in its own directory.

    ``restart()`` reuses the port and the directory, so an AOF is reloaded. ``pause()`` and
    ``resume()`` send SIGSTOP/SIGCONT (a hung server, Jepsen's "pause").
    """

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        port: int | None = None,
        directory: Path | None = None,
        binary: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        self.binary = binary or find_redis_server()
        if self.binary is None:
            raise RuntimeError(
                "redis-server was not found on PATH; install it (Debian: apt install redis-server) "
                "or set REDIS_SERVER_BIN"
            )
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="cachebus-redis-"))
        self._highest_port = _CLUSTER_HIGHEST_PORT if self.options.cluster else 65535
        self.port = port or free_port(self._highest_port)
        self.host = "127.0.0.1"
        self.username = username
        self.password = password if password is not None else self.options.requirepass
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._log_offset = 0

    # ---- addressing -------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "rediss" if self.options.tls else "redis"
        auth = ""
        if self.password is not None:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password, safe='')}@"
        query = f"?ssl_ca_certs={quote(str(self.options.tls.ca))}" if self.options.tls else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/0{query}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync client with short, explicit timeouts and no retries (tests must see faults)."""
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        kwargs.setdefault("retry", None)
        return redis.Redis.from_url(self.url, **kwargs)

    def async_client(self, **kwargs: Any) -> redis.asyncio.Redis:
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        kwargs.setdefault("retry", None)
        return redis.asyncio.Redis.from_url(self.url, **kwargs)

    # ---- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        for attempt in range(5):
            self._log_offset = self._log_size()
            log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - handed to Popen
            try:
                self._proc = subprocess.Popen(
                    [self.binary or "redis-server", *self.options.args(self.port)],
                    cwd=self.directory,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C in the terminal must not hit it directly
                )
            finally:
                log.close()
            with _LIVE_LOCK:
                _LIVE[self._proc.pid] = self
            if self._wait_ready(timeout):
                self._paused = False
                return self
            self._reap()
            if not self._port_in_use_error() or attempt == 4:
                break
            self.port = free_port(self._highest_port)  # raced for the port: take another
        raise RuntimeError(
            f"redis-server on port {self.port} did not start; log:\n{self.log_tail()}"
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if "Ready to accept connections" in self.log_tail(4000):
                return True
            time.sleep(0.02)
        return False

    def _port_in_use_error(self) -> bool:
        return "Address already in use" in self.log_tail(4000)

    def _log_size(self) -> int:
        try:
            return (self.directory / "redis.log").stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, size: int = 2000) -> str:
        """The end of the log written by the current process (earlier runs are left out)."""
        try:
            with open(self.directory / "redis.log", "rb") as log:
                log.seek(self._log_offset)
                data = log.read()
        except FileNotFoundError:
            return ""
        return data[-size:].decode(errors="replace")

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot die from SIGTERM
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with _LIVE_LOCK:
            _LIVE.pop(proc.pid, None)
        self._proc = None
        self._paused = False

    def kill(self) -> None:
        """SIGKILL the server (a crash): no shutdown save, AOF as fsynced so far."""
        self._reap()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self._reap()

    def restart(self, *, crash: bool = True) -> RedisServer:
        """Kill (or stop) and start again on the same port and directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def pause(self) -> None:
        if self._proc is not None and not self._paused:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        """Kill the process and remove the directory we created."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"<RedisServer 127.0.0.1:{self.port} pid={self.pid} {state}>"
