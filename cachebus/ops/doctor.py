"""``cachebus doctor``: check a deployment against what cachebus needs, and say what to change.

Checks (each ``ok``, ``warn``, ``error`` or ``skip``, with the fix for anything not ok):

* Redis version: 6.2 is the minimum (XAUTOCLAIM), 7.0 is needed for gap detection (a group's
  ``entries-read``/``lag`` and the stream's ``max-deleted-entry-id``);
* the maxmemory-policy of the instance holding the stream: ``allkeys-*`` may evict the stream
  or its groups, which turns every in-flight invalidation into a flush (error); a cache on
  the same instance with ``noeviction`` fills up and refuses writes (warn);
* persistence: without AOF a restart loses recent entries (consumers detect it and flush);
* the socket timeout against the read's BLOCK: a client that times out first turns every idle
  read into a reconnect;
* consumer groups: retired services whose groups hold back retention, dead letters, lag;
* ACL rights: ``ACL DRYRUN`` of every command each configured user's role needs, on the real
  key names (the connected user as a consumer, plus ``--acl-user role:name``).

Exit code 1 when any check is an error, else 0; ``--strict`` makes warnings count too; 2 for
a malformed option (``--acl-user`` that is not ``role:name``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio
import typer
from rich.console import Console
from rich.table import Table

from cachebus.contracts.errors import BackendError, ConfigError
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import map_redis_errors
from cachebus.exits import ExitCode
from cachebus.ops._checks import Check, Level
from cachebus.ops._common import (
    JSON_OPT,
    PREFIX_OPT,
    REDIS_URL_OPT,
    SERVICE_OPT,
    STREAM_OPT,
    connect,
    fail,
    load_settings,
    print_json,
    run,
)
from cachebus.ops.acl import acl_checks, parse_acl_users
from cachebus.ops.registry_status import RegistryStatus
from cachebus.ops.status import collect_status
from cachebus.registry_cmd import REGISTRY_OPT
from cachebus.settings import CachebusSettings

__all__ = ["Check", "Level", "diagnose", "doctor"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


async def _config(client: redis.asyncio.Redis, name: str) -> str | None:
    """A config value, or None when this user may not read it (CONFIG is often denied)."""
    try:
        with map_redis_errors(f"CONFIG GET {name}", "Redis"):
            reply = await client.config_get(name)
    except BackendError:
        return None
    value = reply.get(name)
    return None if value is None else str(value)


def version_check(info: dict[str, Any], where: str) -> Check:
    version = str(info.get("redis_version", "0"))
    if _version(version) < (6, 2):
        return Check(
            "redis_version", Level.ERROR, f"{where} runs Redis {version}",
            "upgrade to Redis 7.0 or later (6.2 is the minimum: XAUTOCLAIM)",
        )  # fmt: skip
    if _version(version) < (7, 0):
        return Check(
            "redis_version", Level.WARN,
            f"{where} runs Redis {version}: trimmed gaps cannot be detected (no entries-read)",
            "upgrade to Redis 7.0 or later for gap detection",
        )  # fmt: skip
    return Check("redis_version", Level.OK, f"{where} runs Redis {version}")


def memory_check(info: dict[str, Any], stream_key: str, *, cache_here: bool) -> Check:
    policy = str(info.get("maxmemory_policy", "noeviction"))
    capped = int(info.get("maxmemory", 0) or 0) > 0
    if policy.startswith("allkeys-"):
        return Check(
            "maxmemory_policy", Level.ERROR,
            f"the instance holding {stream_key} has maxmemory-policy {policy}: under memory "
            "pressure it may evict the stream or its consumer groups, and every invalidation "
            "in flight becomes a flush of every service's cache",
            "set maxmemory-policy noeviction on the stream's instance; keep caches (which "
            "want allkeys-lru) on another instance: CACHEBUS_CACHE_URL",
        )  # fmt: skip
    if cache_here and capped and policy == "noeviction":
        return Check(
            "maxmemory_policy", Level.WARN,
            "stream and cache share one instance with noeviction: once full, cache writes "
            "and publishes fail with OOM (never silently)",
            "move the cache to its own instance with allkeys-lru (CACHEBUS_CACHE_URL)",
        )  # fmt: skip
    note = "" if capped else " (no maxmemory set)"
    return Check("maxmemory_policy", Level.OK, f"maxmemory-policy {policy}{note}")


async def persistence_check(client: redis.asyncio.Redis, info: dict[str, Any]) -> Check:
    if int(info.get("aof_enabled", 0) or 0):
        fsync = await _config(client, "appendfsync")
        if fsync == "no":
            return Check(
                "persistence", Level.WARN, "AOF with appendfsync no: the OS decides when to write",
                "set appendfsync everysec (loses at most ~1 s, which consumers detect)",
            )  # fmt: skip
        return Check("persistence", Level.OK, f"AOF on (appendfsync {fsync or 'unknown'})")
    save = await _config(client, "save")
    if save:
        what = "RDB snapshots only: a restart loses the entries since the last snapshot"
    elif save == "":
        what = "no persistence: a restart loses the whole stream and its groups"
    else:  # CONFIG is denied to this user: all we know is that AOF is off
        what = "AOF off: a restart loses recent entries"
    return Check(
        "persistence", Level.WARN,
        f"{what}; consumers notice (run_id, NOGROUP) and flush their whole scope",
        "enable AOF on the stream's instance: appendonly yes, appendfsync everysec",
    )  # fmt: skip


def timeout_check(settings: CachebusSettings) -> Check:
    block_s = settings.block_ms / 1000.0
    if settings.socket_timeout <= block_s:
        return Check(
            "socket_timeout", Level.ERROR,
            f"socket timeout {settings.socket_timeout:g}s <= read BLOCK {block_s:g}s: an idle "
            "read times out and reconnects instead of returning empty (cachebus consume "
            "raises it for its own client; library clients built from it do not)",
            f"set CACHEBUS_SOCKET_TIMEOUT to at least {block_s + 1:g}",
        )  # fmt: skip
    if settings.socket_timeout < block_s + 1.0:
        return Check(
            "socket_timeout", Level.WARN,
            f"socket timeout {settings.socket_timeout:g}s leaves under 1 s over BLOCK {block_s:g}s",
            f"set CACHEBUS_SOCKET_TIMEOUT to at least {block_s + 1:g}",
        )  # fmt: skip
    return Check(
        "socket_timeout", Level.OK,
        f"socket timeout {settings.socket_timeout:g}s > BLOCK {block_s:g}s",
    )  # fmt: skip


async def group_checks(
    client: redis.asyncio.Redis, settings: CachebusSettings, where: str
) -> list[Check]:
    keys = StreamKeys(settings.prefix)
    (status,) = await collect_status(
        client, keys, [settings.stream], where=where,
        retired_after_s=settings.retired_group_after_s, registry=settings.registry_or_none(),
    )  # fmt: skip
    if status.problem:
        level = Level.ERROR if status.exists else Level.OK
        fix = f"delete or rename the key {status.key}" if status.exists else ""
        return [Check("stream", level, f"{status.key}: {status.problem}", fix)]
    checks = [Check("stream", Level.OK, f"{status.key}: {status.length:,} entries")]
    if status.length > 0.8 * settings.max_stream_length:
        checks.append(Check(
            "stream_length", Level.WARN,
            f"{status.length:,} entries, near the hard cap {settings.max_stream_length:,}: "
            "past it, groups that lag lose entries (detected, then flushed)",
            "find the lagging group (cachebus status), or raise CACHEBUS_MAX_STREAM_LENGTH",
        ))  # fmt: skip
    for g in status.groups:
        held = status.length and g.holds_retention
        if g.retired:
            idle = "no member" if g.idle_s is None else f"every member idle {g.idle_s / 3600:.1f} h"
            checks.append(Check(
                f"group {g.name}", Level.WARN,
                f"retired? {idle}; lag {g.lag}, pending {g.pending}"
                + ("; it holds back retention" if held else ""),
                f"if the service is gone: redis-cli XGROUP DESTROY {status.key} {g.name}",
            ))  # fmt: skip
        elif g.lag is not None and g.lag > settings.lag_budget:
            checks.append(Check(
                f"group {g.name}", Level.WARN, f"lag {g.lag:,} over budget {settings.lag_budget:,}",
                "add members to the group or find what slows it (cachebus status)",
            ))  # fmt: skip
        else:
            checks.append(Check(f"group {g.name}", Level.OK, f"lag {g.lag}, pending {g.pending}"))
        if g.dlq_depth:
            checks.append(Check(
                f"dlq {g.name}", Level.WARN, f"{g.dlq_depth:,} dead letter(s)",
                f"inspect: cachebus dlq list --service {g.name}",
            ))  # fmt: skip
    return checks + _registry_checks(status.registry)


def _registry_checks(recorded: RegistryStatus | None) -> list[Check]:
    """Drift between the registries the producers and members recorded (and the file)."""
    if recorded is None or not recorded.participants:
        return []
    if not recorded.drift:
        return [Check("registry", Level.OK, f"{len(recorded.participants)} participants agree")]
    fix = "roll the same registry file out to every service (cachebus registry diff OLD NEW)"
    return [
        Check(
            f"registry {namespace}",
            Level.WARN,
            "drift: " + "; ".join(f"{fp}: {', '.join(who)}" for fp, who in by_fp.items()),
            fix,
        )
        for namespace, by_fp in recorded.drift.items()
    ]


async def diagnose(settings: CachebusSettings) -> list[Check]:
    checks: list[Check] = [timeout_check(settings)]
    stream_key = StreamKeys(settings.prefix).stream(settings.stream)
    async with connect(settings) as (client, where):
        with map_redis_errors("INFO", where):
            info = await client.info()
        checks.append(version_check(info, "the stream's instance"))
        checks.append(memory_check(info, stream_key, cache_here=settings.cache_is_stream))
        checks.append(await persistence_check(client, info))
        checks += await group_checks(client, settings, where)
        checks += await acl_checks(client, settings, cache_here=settings.cache_is_stream)
    if not settings.cache_is_stream:
        async with connect(settings, cache=True) as (client, where):
            with map_redis_errors("INFO", where):
                info = await client.info()
            cache_version = version_check(info, "the cache's instance")
            checks.append(dataclasses.replace(cache_version, name="cache_redis_version"))
            policy = str(info.get("maxmemory_policy", "noeviction"))
            checks.append(Check("cache_maxmemory_policy", Level.OK, f"cache: {policy}"))
            checks += await acl_checks(client, settings, cache_only=True)
    return checks


def _render(checks: Sequence[Check]) -> None:
    colour = {Level.OK: "green", Level.WARN: "yellow", Level.ERROR: "red", Level.SKIP: "dim"}
    table = Table(show_edge=False)
    for column in ("check", "", "finding", "what to change"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c.name, f"[{colour[c.level]}]{c.level.value}[/]", c.detail, c.fix)
    Console(highlight=False).print(table)


def doctor(
    redis_url: str = REDIS_URL_OPT,
    cache_url: str = typer.Option(
        None, "--cache-url", help="Redis of the cache. (env CACHEBUS_CACHE_URL)"
    ),
    prefix: str = PREFIX_OPT,
    stream: str = STREAM_OPT,
    service: str = SERVICE_OPT,
    acl_user: list[str] = typer.Option(
        None, "--acl-user", help="Also check this user, as role:name (producer or consumer)."
    ),
    retention: bool = typer.Option(
        None,
        "--retention",
        help="The consumers trim the stream: check their XTRIM right. (env CACHEBUS_RETENTION)",
        show_default=False,
    ),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too (exit 1)."),
    registry: Path = REGISTRY_OPT,
    json_out: bool = JSON_OPT,
    database: str = typer.Option(
        None,
        "--database",
        envvar="CACHEBUS_CDC_DATABASE_URL",
        help="Also check the replication slots of this PostgreSQL (cachebus cdc).",
    ),
) -> None:
    """Check the deployment (version, eviction, persistence, timeouts, groups, ACL, registry)."""
    settings = load_settings(
        "doctor", redis_url=redis_url, cache_url=cache_url, prefix=prefix, stream=stream,
        service=service, acl_users=acl_user or None, registry=registry, retention=retention,
    )  # fmt: skip
    try:
        parse_acl_users(settings.acl_users)  # a malformed one is refused before connecting
    except ConfigError as exc:
        fail("doctor", str(exc), ExitCode.USAGE)

    checks = run("doctor", lambda: diagnose(settings))
    if database:
        from cachebus.ops.cdc_checks import slot_checks

        checks += slot_checks(database)
    errors = sum(c.level is Level.ERROR for c in checks)
    warnings = sum(c.level is Level.WARN for c in checks)
    if json_out:
        print_json(
            {"errors": errors, "warnings": warnings, "checks": [c.as_dict() for c in checks]}
        )
    else:
        _render(checks)
    raise typer.Exit(ExitCode.FINDING if errors or (strict and warnings) else ExitCode.OK)
