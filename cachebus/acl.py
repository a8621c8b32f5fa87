"""Least-privilege Redis ACL users for a cachebus deployment, generated from the key registry.

Every key pattern below comes from :class:`cachebus.contracts.keys.StreamKeys` and
:class:`cachebus.contracts.keys.KeySpace`, never from a format string of its own, so the ACL cannot
drift from the keys the code uses (``tests/infra`` also checks the committed
``infra/redis/users.acl`` against :func:`render_acl`).

Roles (Redis 7.0 selectors, verified against 7.0.15 by ``tests/security``):

* ``producer``: XADD on the stream, and HSET of the registry record beside it (which registry
  it runs, written once per process).
* ``svc-<service>``: the cache commands on its own scope ``{prefix}:{service}:*`` (root
  permissions), and one selector per stream-side key: group commands on the stream, its own
  group-meta hash, its own counters hash, XADD on its own dead-letter stream, the broadcast
  epoch, the registry record. Without selectors ``~stream`` plus ``+unlink`` would let it
  UNLINK the stream.
* ``cdc``: the commit-log relay (``cachebus cdc``): XADD on the stream, and its positions
  (``{prefix}:cdc:{stream}:<slot>`` hashes) read and written in the same MULTI/EXEC as its
  events, plus the registry record.
* ``ops``: read-only inspection (XINFO, XPENDING, XRANGE, INFO, SLOWLOG).
* ``admin``: everything, for operators only.

Redis 7.0 cannot restrict arguments: a producer can send ``XADD ... MAXLEN 0`` and a consumer
can name another group in XACK. Gap detection turns a trimmed stream into a flush; the group
argument is a documented limit (README, "Deployment and security").
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import StreamKeys, glob_match, scope_match, validate_name

__all__ = [
    "DEFAULT_LAYOUT",
    "AclLayout",
    "AclUser",
    "ServiceGrant",
    "load_or_create_secrets",
    "password_env_name",
    "render_acl",
]

# Commands every user may send while connecting: redis-py's health-check PING, HELLO for
# RESP3, SELECT for a non-zero db, CLIENT SETNAME (consumers name their connections).
# CLIENT SETINFO does not exist before 7.2 (ACL SETUSER refuses it) and redis-py ignores the
# error; AUTH is always allowed.
_CONNECT = ("+ping", "+hello", "+select", "+client|setname")
_CACHE = ("+get", "+getex", "+mget", "+set", "+unlink", "+del", "+incr", "+scan", "+dbsize")
# The get_or_set lease index (a sorted set per namespace, see cachebus.core.leases): the lease
# scripts keep it (ZADD, ZREMRANGEBYSCORE, ZSCORE, ZREM, PTTL, PEXPIRE, TIME) and a pattern
# invalidation finds the leases to void in it (ZSCAN).
_LEASES = (
    "+zadd", "+zrem", "+zremrangebyscore", "+zscore", "+zscan", "+pttl", "+pexpire", "+time",
)  # fmt: skip
_SCRIPTS = ("+evalsha", "+eval")  # each command inside a script is checked again
_GROUP = (
    "+xreadgroup", "+xread", "+xack", "+xautoclaim", "+xclaim", "+xpending",
    "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers",
    "+xgroup|create", "+xgroup|createconsumer", "+xgroup|delconsumer",
)  # fmt: skip
_RETENTION = ("+xtrim", "+xlen")
_META = ("+hgetall", "+hset", "+hdel", "+hincrby")
_COUNTERS = ("+hincrby", "+hgetall")
_RECORD = ("+hset", "+hget")
_INSPECT = (
    "+info", "+dbsize", "+scan", "+slowlog|get", "+latency|latest", "+latency|history",
    "+memory|stats", "+client|list",
)  # fmt: skip
_READ = (
    "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers", "+xpending", "+xrange",
    "+xrevrange", "+xlen", "+hgetall", "+hget", "+get", "+type", "+ttl", "+pttl", "+exists",
    "+memory|usage",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceGrant:
    """A service that consumes invalidations: its consumer group and cache scope are its name.

    ``retention=True`` lets its consumer trim the stream (``ConsumerConfig.retention``); give it
    to one service only: a trim past a group is detected and flushed, but it is still a flush.
    """

    name: str
    retention: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name, "service")


@dataclass(frozen=True, slots=True)
class AclUser:
    """One ACL user: its name, its role and its rules without any password."""

    name: str
    role: str
    rules: tuple[str, ...]

    def line(self, password: str | None) -> str:
        """The ``users.acl`` line; without a password the user is ``off`` (cannot log in)."""
        auth: tuple[str, ...]
        if password is None or self.role == "disabled":
            auth = ("off", "resetpass")
        else:
            if not password or any(ch.isspace() for ch in password):
                raise ConfigError(
                    f"the password of ACL user {self.name!r} must be non-empty, without spaces"
                )
            auth = ("on", "resetpass", "#" + hashlib.sha256(password.encode()).hexdigest())
        return " ".join(("user", self.name, *auth, *self.rules))

    def __repr__(self) -> str:
        return f"AclUser({self.name!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class AclLayout:
    """Who uses one invalidation stream: the services, the key prefix, the user names."""

    services: tuple[ServiceGrant, ...]
    prefix: str = "cb"
    stream: str = "inval"
    user_prefix: str = "cachebus"

    def __post_init__(self) -> None:
        validate_name(self.prefix, "prefix")
        validate_name(self.stream, "stream")
        validate_name(self.user_prefix, "user prefix")
        names = [s.name for s in self.services]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"services listed twice: {', '.join(twice)}")
        stream_side = self._stream_side_keys()
        for service in self.services:
            scope = scope_match(self.prefix, service.name)
            hit = [key for key in stream_side if glob_match(scope, key)]
            if hit:
                raise ConfigError(
                    f"service {service.name!r} cannot be a cache scope: its keys "
                    f"({scope}) would include {hit[0]}; choose another service name"
                )

    @property
    def keys(self) -> StreamKeys:
        return StreamKeys(self.prefix)

    def cdc_positions(self) -> str:
        """The key pattern of the commit-log relay's positions (one hash per slot)."""
        one = self.keys.cdc_position(self.stream, "slot")
        return one[: -len("slot")] + "*"

    def _stream_side_keys(self) -> list[str]:
        keys = self.keys
        out = [keys.stream(self.stream), keys.epoch(self.stream), keys.registry_record(self.stream)]
        out.append(keys.cdc_position(self.stream, "slot"))
        for service in self.services:
            out += [
                keys.group_meta(self.stream, service.name),
                keys.dead_letter(self.stream, service.name),
                keys.counters(self.stream, service.name),
            ]
        return out

    def user_name(self, role: str) -> str:
        return f"{self.user_prefix}-{role}"

    def service_user(self, service: str) -> str:
        return self.user_name(f"svc-{service}")

    def users(self) -> list[AclUser]:
        """Every user of the deployment, the disabled ``default`` user first."""
        keys = self.keys
        stream_key = keys.stream(self.stream)
        epoch_key = keys.epoch(self.stream)
        base = ("resetkeys", "resetchannels", "-@all")
        users = [
            # Off: nobody can log in as it. Its permissions still apply to Redis's own AOF
            # loader, which replays MULTI/EXEC blocks as the default user and (Redis 7.0)
            # re-checks the ACL at EXEC: with -@all a restart silently dropped every
            # transaction (the cdc relay's events, XREADGROUP's propagated XCLAIMs).
            AclUser("default", "disabled", ("~*", "&*", "+@all")),
            AclUser(self.user_name("admin"), "admin", ("~*", "&*", "+@all")),
            AclUser(
                self.user_name("producer"),
                "producer",
                (
                    *base,
                    *_CONNECT,
                    f"%W~{stream_key}",
                    "+xadd",
                    _selector(f"%W~{keys.registry_record(self.stream)}", ("+hset",)),
                ),
            ),
        ]
        users.append(
            AclUser(
                self.user_name("cdc"),
                "cdc",
                (
                    *base,
                    *_CONNECT,
                    "+multi", "+exec", "+discard",
                    f"%W~{stream_key}",
                    "+xadd",
                    _selector(f"~{self.cdc_positions()}", ("+hset", "+hgetall", "+hincrby")),
                    _selector(f"%W~{keys.registry_record(self.stream)}", ("+hset",)),
                ),
            )
        )  # fmt: skip
        readable = [stream_key, epoch_key, keys.registry_record(self.stream), self.cdc_positions()]
        for service in self.services:
            readable += [
                keys.group_meta(self.stream, service.name),
                keys.dead_letter(self.stream, service.name),
                keys.counters(self.stream, service.name),
            ]
        users.append(
            AclUser(
                self.user_name("ops"),
                "ops",
                (*base, *_CONNECT, *_INSPECT, *(f"%R~{k}" for k in readable), *_READ),
            )
        )
        users += [self._service_user(service, stream_key, epoch_key) for service in self.services]
        return users

    def _service_user(self, service: ServiceGrant, stream_key: str, epoch_key: str) -> AclUser:
        keys = self.keys
        scope = scope_match(self.prefix, service.name)
        group = (*_GROUP, *(_RETENTION if service.retention else ()), *_SCRIPTS)
        meta = keys.group_meta(self.stream, service.name)
        dlq = keys.dead_letter(self.stream, service.name)
        counters = keys.counters(self.stream, service.name)
        record = keys.registry_record(self.stream)
        rules = (
            "resetkeys", "resetchannels", "-@all", *_CONNECT, "+info",
            f"~{scope}", *_CACHE, *_LEASES, *_SCRIPTS,
            _selector(f"~{stream_key}", group),
            _selector(f"~{meta}", _META),
            _selector(f"~{counters}", _COUNTERS),
            _selector(f"%W~{dlq}", ("+xadd",)),
            _selector(f"~{epoch_key}", ("+get", "+set")),
            _selector(f"~{record}", _RECORD),
        )  # fmt: skip
        return AclUser(self.service_user(service.name), "service", rules)


def _selector(keys: str, commands: Iterable[str]) -> str:
    return "(" + " ".join((keys, "-@all", *commands)) + ")"


#: The audit's deployment: four services on one stream; the workers trim it.
DEFAULT_LAYOUT = AclLayout(
    services=(
        ServiceGrant("bot"),
        ServiceGrant("api"),
        ServiceGrant("workers", retention=True),
        ServiceGrant("indexer"),
    )
)


def render_acl(layout: AclLayout, passwords: Mapping[str, str] | None = None) -> str:
    """The ``users.acl`` text. Users without a password in ``passwords`` are ``off``.

    Passwords are written as SHA-256 hashes (``#...``), so the file never holds a secret.
    Redis ACL files allow no comments: explanations live in the README.
    """
    passwords = passwords or {}
    unknown = sorted(set(passwords) - {u.name for u in layout.users()})
    if unknown:
        raise ConfigError(f"passwords given for users the layout lacks: {', '.join(unknown)}")
    return "".join(u.line(passwords.get(u.name)) + "\n" for u in layout.users())


def password_env_name(user: str) -> str:
    """``cachebus-svc-bot`` -> ``CACHEBUS_PASSWORD_CACHEBUS_SVC_BOT``."""
    return "CACHEBUS_PASSWORD_" + user.upper().replace("-", "_").replace(".", "_")


def load_or_create_secrets(path: Path, layout: AclLayout) -> dict[str, str]:
    """Passwords of every login user, kept in ``path`` (``NAME=value`` lines, mode 0600).

    Existing passwords are kept; missing ones are generated. The file is rewritten atomically
    and never made readable by others.
    """
    current: dict[str, str] = {}
    if path.exists():
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep or not value:
                raise ConfigError(f"{path}:{number}: expected NAME=value")
            current[name.strip()] = value.strip()
    passwords: dict[str, str] = {}
    lines = ["# cachebus ACL passwords: keep private (mode 0600), never commit"]
    for user in layout.users():
        if user.role == "disabled":
            continue
        env = password_env_name(user.name)
        passwords[user.name] = current.get(env) or secrets.token_urlsafe(32)
        lines.append(f"{env}={passwords[user.name]}")
    extra = [f"{k}={v}" for k, v in current.items() if not k.startswith("CACHEBUS_PASSWORD_")]
    _write_private(path, "\n".join([*lines, *extra]) + "\n")
    return passwords


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
