"""Which service runs which registry: the records beside a stream, for ``cachebus status``.

Producers record their registry with their first publish, consumer group members when they
start (see :mod:`cachebus.contracts.registry_record`). Here they are read back and compared:
a namespace whose fingerprint differs between participants (or from the registry file given
to ``status``) is *drift*, named with who holds which fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from rich.console import Console
from rich.table import Table

from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_record import ParticipantRecord, parse_records
from cachebus.core.connection import map_redis_errors
from cachebus.ops._common import age, now_ms

__all__ = ["RegistryStatus", "collect_registry_status", "render_registry_status"]


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    stream: str
    participants: tuple[ParticipantRecord, ...]
    #: Namespace -> fingerprint -> who has it (``file`` for the registry given to status),
    #: for the namespaces whose fingerprints differ.
    drift: dict[str, dict[str, list[str]]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "participants": [dataclasses.asdict(p) for p in self.participants],
            "drift": self.drift,
        }


def _drift(
    participants: Sequence[ParticipantRecord], local: Registry | None
) -> dict[str, dict[str, list[str]]]:
    seen: dict[str, dict[str, list[str]]] = {}
    for p in participants:
        for namespace, fingerprint in p.namespaces.items():
            seen.setdefault(namespace, {}).setdefault(fingerprint, []).append(f"{p.role} {p.name}")
    if local is not None:
        for ns in local:
            if ns.name in seen:  # a namespace nobody records is not drift
                seen[ns.name].setdefault(ns.fingerprint, []).append("file")
    return {ns: by_fp for ns, by_fp in sorted(seen.items()) if len(by_fp) > 1}


async def collect_registry_status(
    client: redis.asyncio.Redis,
    keys: StreamKeys,
    stream: str,
    *,
    where: str,
    local: Registry | None = None,
) -> RegistryStatus:
    key = keys.registry_record(stream)
    with map_redis_errors(f"HGETALL {key}", where):
        raw = await client.hgetall(key)
    participants, _definitions = parse_records(raw)
    return RegistryStatus(stream, tuple(participants), _drift(participants, local))


def render_registry_status(status: RegistryStatus, console: Console) -> None:
    if not status.participants:
        console.print(f"registry of {status.stream}: no producer or member has recorded one yet")
        return
    drifting = {who for by_fp in status.drift.values() for names in by_fp.values() for who in names}
    table = Table(title=f"registry versions on {status.stream}", show_edge=False)
    for column in ("who", "version", "fingerprint", "recorded", "state"):
        table.add_column(column)
    now = now_ms()
    for p in status.participants:
        who = f"{p.role} {p.name}"
        state = "[yellow]drift[/]" if who in drifting else "[green]ok[/]"
        recorded = f"{age(max(0, now - p.at_ms) / 1000.0)} ago" if p.at_ms else "-"
        table.add_row(who, p.version or "-", p.fingerprint, recorded, state)
    console.print(table)
    for namespace, by_fp in status.drift.items():
        holders = "; ".join(f"{fp}: {', '.join(names)}" for fp, names in by_fp.items())
        console.print(f"[yellow]drift[/] in namespace [bold]{namespace}[/]: {holders}")
