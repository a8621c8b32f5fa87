"""Start and control local PostgreSQL servers with logical decoding: tests, benchmarks, demo.

Each server is a fresh cluster: ``initdb`` into a temporary directory, then ``postgres`` on a
free loopback port with ``wal_level=logical``, its unix socket inside that directory. It is
started by us, tracked by pid and ended by pid (the postmaster runs in its own session, so
:meth:`PostgresServer.kill` ends it with its backends: a real crash). An ``atexit`` hook ends
whatever is still running when the interpreter exits.

PostgreSQL refuses to run as root: as root, both commands run as the ``postgres`` OS user
(Debian's packages create it), on a directory handed over to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachebus.testing.server import free_port

__all__ = ["PostgresServer", "find_postgres_bindir"]

_LIVE: dict[int, PostgresServer] = {}
_LIVE_LOCK = threading.Lock()
_OS_USER = "postgres"

#: Settings every server gets (logical decoding, no durability cost a test does not need).
BASE_SETTINGS: Mapping[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "100",  # tests share a server and leave their slots
    "max_wal_senders": "16",
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "60",
    "wal_sender_timeout": "10s",
}


def _end_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE.values())
    for server in servers:
        server.kill()


atexit.register(_end_all)


def find_postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: ``$CACHEBUS_PG_BINDIR``, else
    ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``; None without one."""
    candidates: list[Path] = []
    if os.environ.get("CACHEBUS_PG_BINDIR"):
        candidates.append(Path(os.environ["CACHEBUS_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    candidates.extend(reversed(versions))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


class PostgresServer:
    """One PostgreSQL cluster on a loopback port, in its own temporary directory.

    ``settings`` add to (or override) :data:`BASE_SETTINGS`; ``wal_segsize_mb`` makes small
    WAL segments (1 MB makes a slot exceed a small ``max_slot_wal_keep_size`` quickly).
    """

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        wal_segsize_mb: int | None = None,
        bindir: Path | None = None,
        port: int | None = None,
    ) -> None:
        found = bindir or find_postgres_bindir()
        if found is None:
            raise RuntimeError(
                "PostgreSQL's initdb and postgres were not found (pg_config --bindir); install "
                "them (Debian: apt install postgresql) or set CACHEBUS_PG_BINDIR"
            )
        self.bindir = found
        self.settings = {**BASE_SETTINGS, **(settings or {})}
        self.wal_segsize_mb = wal_segsize_mb
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.directory = Path(tempfile.mkdtemp(prefix="cachebus-pg-"))
        self.data = self.directory / "data"
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_OS_USER)
            self._as_user = dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._log_offset = 0

    # ---- addressing -------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    # ---- lifecycle --------------------------------------------------------------------
    def _initdb(self) -> None:
        args = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user]
        args += ["--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"]
        if self.wal_segsize_mb is not None:
            args.append(f"--wal-segsize={self.wal_segsize_mb}")
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            check=False,
            **self._as_user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def start(self, timeout: float = 30.0) -> PostgresServer:
        if self.running:
            return self
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        args += ["-k", str(self.directory)]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        self._log_offset = self._log_size()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to Popen
        try:
            self._proc = subprocess.Popen(
                args,
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: kill() reaches its backends too
                **self._as_user,
            )
        finally:
            log.close()
        with _LIVE_LOCK:
            _LIVE[self._proc.pid] = self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if "ready to accept connections" in self.log_tail(8000):
                return self
            time.sleep(0.05)
        tail = self.log_tail()
        self._reap()
        raise RuntimeError(f"postgres on port {self.port} did not start; log:\n{tail}")

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, size: int = 2000) -> str:
        """The end of the log written since the last start."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                data = log.read()
        except FileNotFoundError:
            return ""
        return data[-size:].decode(errors="replace")

    def _signal_group(self, sig: int) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with _LIVE_LOCK:
            _LIVE.pop(proc.pid, None)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash: recovery runs at the next start)."""
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, a checkpoint written), then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self._reap()

    def restart(self, *, crash: bool = False) -> PostgresServer:
        """Stop (or crash) and start again on the same port and data directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """End the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer 127.0.0.1:{self.port} pid={self.pid} {state}>"
