"""ACL rights, checked with ``ACL DRYRUN`` (Redis 7.0+) on the real key names of each role.

A role is the list of commands cachebus runs for it, with the keys it runs them on:

* ``producer``: XADD to the stream, HSET of the registry record;
* ``consumer``: reading, acking, claiming and dead-lettering on the stream, the group meta
  and counters hashes, the registry record, the epoch, retention trims; and, on the cache's
  instance, UNLINK/SCAN/EVALSHA/INFO on the service's cache scope.

DRYRUN simulates without executing, so the check is harmless. It needs the connected user to
be allowed ``ACL DRYRUN``; when it is not, the check is skipped and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio

from cachebus.consumers.config import default_consumer_name
from cachebus.consumers.entries import text
from cachebus.contracts.errors import BackendError, ConfigError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.contracts.registry import Namespace, Registry
from cachebus.core.connection import map_redis_errors
from cachebus.ops._checks import Check, Level
from cachebus.settings import CachebusSettings

__all__ = ["ROLES", "acl_checks", "parse_acl_users", "role_commands"]

ROLES = ("producer", "consumer")
_SHA = "0" * 40  # DRYRUN checks the right to EVALSHA, never the script's existence


def _stream_commands(settings: CachebusSettings, role: str) -> list[tuple[str, ...]]:
    keys = StreamKeys(settings.prefix)
    stream = keys.stream(settings.stream)
    record = keys.registry_record(settings.stream)
    if role == "producer":
        return [
            ("XADD", stream, "MAXLEN", "~", "1000000", "*", "__data__", "{}"),
            ("HSET", record, "producer:doctor", "{}"),
        ]
    group = settings.service or "cachebus-doctor"
    member = settings.consumer or default_consumer_name(group)
    meta = keys.group_meta(settings.stream, group)
    counters = keys.counters(settings.stream, group)
    return [
        ("XREADGROUP", "GROUP", group, member, "COUNT", "1", "STREAMS", stream, ">"),
        ("XACK", stream, group, "0-1"),
        ("XAUTOCLAIM", stream, group, member, "30000", "0-0", "COUNT", "1"),
        ("XCLAIM", stream, group, member, "0", "0-1", "JUSTID"),
        ("XPENDING", stream, group, "-", "+", "1", member),
        ("XINFO", "STREAM", stream),
        ("XINFO", "GROUPS", stream),
        ("XINFO", "CONSUMERS", stream, group),
        ("XGROUP", "CREATE", stream, group, "$", "MKSTREAM"),
        ("XGROUP", "DELCONSUMER", stream, group, member),
        ("XADD", keys.dead_letter(settings.stream, group), "MAXLEN", "~", "100000", "*", "f", "v"),
        ("HGETALL", meta),
        ("HSET", meta, "synced", "x"),
        ("HINCRBY", meta, "flushes:manual", "1"),
        ("HDEL", meta, "fallback_mark"),
        ("HINCRBY", counters, f"applied:{member}", "1"),
        ("HSET", record, f"member:{group}/{member}", "{}"),
        ("HGET", record, "def:0"),
        ("EVALSHA", _SHA, "1", stream, group, member, "0"),
        ("INFO", "server"),
        # Trimming is the retention's, which a consumer user is denied on purpose without it.
        *([("XTRIM", stream, "MINID", "~", "0-1")] if settings.retention else []),
    ]


def _cache_commands(settings: CachebusSettings) -> list[tuple[str, ...]]:
    # Any namespace shows the rights on the scope; without a registry, a stand-in.
    registry = settings.registry_or_none() or Registry([Namespace("doctor", "{id}", 60)])
    space = KeySpace(settings.prefix, settings.service or "cachebus-doctor", registry=registry)
    ns = (settings.namespaces or list(registry.names))[0]
    return [
        ("UNLINK", space.key(ns, "doctor"), space.lease_key(ns, "doctor")),
        ("SCAN", "0", "MATCH", space.namespace_match(ns), "COUNT", "100"),
        ("EVALSHA", _SHA, "1", space.generation_key(ns)),
        ("INFO", "memory"),
        ("DBSIZE",),
    ]


def role_commands(
    settings: CachebusSettings, role: str, *, stream: bool = True, cache: bool = True
) -> list[tuple[str, ...]]:
    """The commands (with their real keys) a user of ``role`` must be allowed."""
    out = _stream_commands(settings, role) if stream else []
    if role == "consumer" and cache:
        out += _cache_commands(settings)
    return out


def parse_acl_users(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``role:name`` specs as ``(role, name)``; a malformed one raises ConfigError."""
    users = []
    for spec in specs:
        role, sep, name = spec.partition(":")
        if not sep or role not in ROLES or not name:
            raise ConfigError(
                f"--acl-user {spec!r} is not role:name; roles: {', '.join(ROLES)} "
                "(for example producer:cachebus-producer)"
            )
        users.append((role, name))
    return users


def _bookkeeping(settings: CachebusSettings) -> frozenset[str]:
    """Keys whose commands are bookkeeping only: refused, cachebus goes on without them (the
    registry record, the counters), so a refusal there is a warning, not an error."""
    keys = StreamKeys(settings.prefix)
    group = settings.service or "cachebus-doctor"
    return frozenset({keys.registry_record(settings.stream), keys.counters(settings.stream, group)})


async def _dryrun(
    client: redis.asyncio.Redis, user: str, commands: Sequence[tuple[str, ...]]
) -> list[tuple[tuple[str, ...], str]]:
    """Refusals, as ``(command, why)``; empty when every command is allowed."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command("ACL", "DRYRUN", user, *command)
    with map_redis_errors("ACL DRYRUN", "Redis"):
        replies = await pipe.execute(raise_on_error=False)
    refused = []
    for command, reply in zip(commands, replies, strict=True):
        if isinstance(reply, Exception):  # no such user, DRYRUN refused or unknown (< 7.0)
            raise BackendError(f"ACL DRYRUN {user}: {reply}") from reply
        if text(reply) != "OK":
            refused.append((command, text(reply)))
    return refused


async def acl_checks(
    client: redis.asyncio.Redis,
    settings: CachebusSettings,
    *,
    cache_here: bool = True,
    cache_only: bool = False,
) -> list[Check]:
    """One check per user: the connected one as a consumer, then ``settings.acl_users``."""
    name = "cache_acl" if cache_only else "acl"
    users = parse_acl_users(settings.acl_users) if not cache_only else []
    try:
        with map_redis_errors("ACL WHOAMI", "Redis"):
            me = text(await client.execute_command("ACL", "WHOAMI"))
    except BackendError as exc:
        return [Check(name, Level.SKIP, f"ACL WHOAMI refused ({exc})")]
    checks = []
    for role, user in [("consumer", me), *users]:
        commands = role_commands(
            settings, role, stream=not cache_only, cache=cache_only or cache_here
        )
        try:
            refused = await _dryrun(client, user, commands)
        except BackendError as exc:
            if f"User '{user}' not found" in str(exc):
                missing = f"user {user!r} does not exist"
                checks.append(Check(name, Level.ERROR, missing, "create it, or fix its name"))
                continue
            checks.append(Check(
                name, Level.SKIP, f"cannot check user {user!r}: {exc}",
                "run doctor as a user allowed ACL DRYRUN (Redis 7.0+), naming users with "
                "--acl-user role:name",
            ))  # fmt: skip
            continue
        optional = _bookkeeping(settings)
        required = [r for r in refused if not optional & set(r[0])]
        shown = [f"{' '.join(c[:2])}: {why}" for c, why in required or refused]
        if refused:
            checks.append(Check(
                name, Level.ERROR if required else Level.WARN,
                f"user {user!r} ({role}) is refused {len(shown)} of {len(commands)} commands"
                + ("" if required else " (bookkeeping only: status will miss its registry "
                   "record or counters)") + ": "
                + "; ".join(shown[:6]) + (" ..." if len(shown) > 6 else ""),
                f"grant {user!r} these commands on keys {settings.prefix}:* "
                f"(ACL SETUSER {user} ...), or use the {role} user of infra/",
            ))  # fmt: skip
        else:
            checks.append(
                Check(name, Level.OK, f"user {user!r} may run all {len(commands)} {role} commands")
            )
    return checks
