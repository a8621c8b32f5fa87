"""The two development instances, started from the local ``redis-server`` with infra's configs.

``start`` runs ``redis-server infra/redis/stream.conf`` and ``infra/redis/cache.conf`` on the
given ports, each in its own directory under ``run_dir``, both loading one ``users.acl``
rendered with fresh passwords (:mod:`cachebus.acl`). It writes, all mode 0600:

* ``secrets.env``: every user's password (reused on the next start);
* ``env/<user>.env``: ``CACHEBUS_REDIS_URL`` / ``CACHEBUS_CACHE_URL`` for that user, ready for
  ``set -a; . .run/redis/env/cachebus-svc-bot.env; cachebus consume ...``;
* ``stream.pid`` / ``cache.pid``: ``<pid> <port>``.

``stop`` ends them by pid, and only after checking that the pid is still a ``redis-server``
on the recorded port (a pid can be reused after a reboot). ``make demo`` uses this module.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis

from cachebus.acl import DEFAULT_LAYOUT, AclLayout, load_or_create_secrets, render_acl
from cachebus.contracts.errors import ConfigError
from cachebus.testing.server import find_redis_server

__all__ = [
    "ROLES",
    "DevInstance",
    "DevRedis",
    "DevRedisConfig",
    "restart",
    "running",
    "start",
    "stop",
]

#: The two instances, in start order.
ROLES = ("stream", "cache")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _default_config_dir() -> Path:
    # Package data: in a checkout, cachebus/_infra/* are links to infra/redis/ (one copy).
    data = importlib.resources.files("cachebus") / "_infra"
    if not isinstance(data, Path):  # a zipped install: redis-server needs real files
        raise ConfigError("cachebus is installed as a zip: pass the directory of the configs")
    return data


@dataclass(frozen=True, slots=True)
class DevRedisConfig:
    """Where and how the dev instances run."""

    run_dir: Path = Path(".run/redis")
    stream_port: int = 6380
    cache_port: int = 6381
    host: str = "127.0.0.1"
    layout: AclLayout = DEFAULT_LAYOUT
    #: Directory holding ``stream.conf`` and ``cache.conf`` (default: the ones cachebus ships,
    #: ``infra/redis/`` of the repository).
    config_dir: Path = field(default_factory=_default_config_dir)
    binary: str | None = None
    start_timeout: float = 10.0

    def port(self, role: str) -> int:
        return self.stream_port if role == "stream" else self.cache_port


@dataclass(frozen=True, slots=True)
class DevInstance:
    role: str
    pid: int
    port: int


@dataclass(frozen=True, slots=True)
class DevRedis:
    """The running pair. ``url`` embeds a password: hand it to clients, never print it."""

    config: DevRedisConfig
    instances: tuple[DevInstance, ...]
    passwords: dict[str, str] = field(repr=False)

    def url(self, role: str, user: str) -> str:
        port = self.config.port(role)
        auth = f"{quote(user, safe='')}:{quote(self.passwords[user], safe='')}@"
        return f"redis://{auth}{self.config.host}:{port}/0"

    def address(self, role: str) -> str:
        return f"{self.config.host}:{self.config.port(role)}"

    def client(self, role: str, user: str | None = None) -> redis.Redis:
        """A sync client (the admin user unless ``user`` is given)."""
        user = user or self.config.layout.user_name("admin")
        return redis.Redis.from_url(self.url(role, user), socket_timeout=5, retry=None)


def _command_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False  # a zombie of another parent: already dead
    return True


def _is_our_server(pid: int, port: int) -> bool:
    command = _command_of(pid)
    if command is None or "redis-server" not in command:
        return False
    # Redis retitles itself "redis-server host:port"; with set-proc-title off, "--port N".
    return re.search(rf"(:|--port ){port}(?!\d)", command) is not None


def _read_pidfile(path: Path) -> DevInstance | None:
    try:
        pid_text, port_text = path.read_text().split()
        return DevInstance(path.stem, int(pid_text), int(port_text))
    except (FileNotFoundError, ValueError):
        return None


def running(run_dir: Path) -> list[DevInstance]:
    """The instances recorded in ``run_dir`` that are still our redis-servers."""
    found = []
    for role in ROLES:
        inst = _read_pidfile(run_dir / f"{role}.pid")
        if inst is not None and _alive(inst.pid) and _is_our_server(inst.pid, inst.port):
            found.append(inst)
    return found


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _write_env_files(pair: DevRedis) -> None:
    for user in pair.config.layout.users():
        if user.role == "disabled":
            continue
        text = (
            f"CACHEBUS_REDIS_URL={pair.url('stream', user.name)}\n"
            f"CACHEBUS_CACHE_URL={pair.url('cache', user.name)}\n"
        )
        _write_private(pair.config.run_dir / "env" / f"{user.name}.env", text)


def _spawn(config: DevRedisConfig, role: str, acl: Path) -> DevInstance:
    binary = config.binary or find_redis_server()
    if binary is None:
        raise ConfigError("redis-server was not found on PATH (Debian: apt install redis-server)")
    conf = config.config_dir / f"{role}.conf"
    if not conf.is_file():
        raise ConfigError(f"{conf} is missing: pass --config-dir, a directory with {role}.conf")
    data = (config.run_dir / role).resolve()
    data.mkdir(parents=True, exist_ok=True)
    log = data / "redis.log"
    log.unlink(missing_ok=True)
    port = config.port(role)
    args = [
        binary, str(conf.resolve()),
        "--port", str(port), "--bind", config.host, "--dir", str(data),
        "--aclfile", str(acl.resolve()), "--logfile", str(log), "--daemonize", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the command that started it; Ctrl-C spares it
    )
    _CHILDREN[proc.pid] = proc
    (config.run_dir / f"{role}.pid").write_text(f"{proc.pid} {port}\n")
    return DevInstance(role, proc.pid, port)


def _wait_ready(pair: DevRedis, inst: DevInstance) -> None:
    deadline = time.monotonic() + pair.config.start_timeout
    log = pair.config.run_dir / inst.role / "redis.log"
    while time.monotonic() < deadline:
        if not _alive(inst.pid):
            break
        client = pair.client(inst.role)
        try:
            if client.ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
        finally:
            client.close()
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
    stop(pair.config.run_dir)
    raise ConfigError(
        f"the {inst.role} redis-server on port {inst.port} did not start (port taken? pass "
        f"another --{inst.role}-port); its log ends with:\n{tail}"
    )


def start(config: DevRedisConfig | None = None) -> DevRedis:
    """Start both instances (or find them already running) and return how to reach them."""
    config = config or DevRedisConfig()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    passwords = load_or_create_secrets(config.run_dir / "secrets.env", config.layout)
    acl = config.run_dir / "users.acl"
    already = running(config.run_dir)
    if already:
        ports = {inst.role: inst.port for inst in already}
        if len(already) == len(ROLES) and all(ports[r] == config.port(r) for r in ROLES):
            return DevRedis(config, tuple(already), passwords)
        raise ConfigError(
            f"dev Redis already runs in {config.run_dir} on other ports or partly "
            f"({ports}); run `cachebus dev-redis stop --dir {config.run_dir}` first"
        )
    _write_private(acl, render_acl(config.layout, passwords))
    instances = tuple(_spawn(config, role, acl) for role in ROLES)
    pair = DevRedis(config, instances, passwords)
    for inst in instances:
        _wait_ready(pair, inst)
    _write_env_files(pair)
    return pair


def restart(pair: DevRedis, role: str, timeout: float = 10.0) -> DevRedis:
    """Stop one instance (SIGTERM: it writes its AOF out) and start it again on its directory."""
    old = next(inst for inst in pair.instances if inst.role == role)
    if _alive(old.pid) and _is_our_server(old.pid, old.port):
        _end(old.pid, timeout)
    new = _spawn(pair.config, role, pair.config.run_dir / "users.acl")
    instances = tuple(new if inst.role == role else inst for inst in pair.instances)
    restarted = DevRedis(pair.config, instances, pair.passwords)
    _wait_ready(restarted, new)
    return restarted


def stop(run_dir: Path, timeout: float = 10.0) -> list[DevInstance]:
    """SIGTERM each recorded instance (SIGKILL after ``timeout``); returns those stopped."""
    stopped = []
    for role in ROLES:
        pidfile = run_dir / f"{role}.pid"
        inst = _read_pidfile(pidfile)
        if inst is None:
            continue
        if _alive(inst.pid) and _is_our_server(inst.pid, inst.port):
            _end(inst.pid, timeout)
            stopped.append(inst)
        pidfile.unlink(missing_ok=True)
    return stopped


def _end(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=timeout)
