"""The consuming side of ``cachebus bench fanout``: several groups' members in one process.

``python -m cachebus.bench._fanout_worker MODE URL PREFIX GROUPS EVENTS SECONDS OUTFILE``:
runs one member for each of the comma-separated GROUPS (``cachebus``: our ConsumerService;
``raw``: an XREADGROUP loop), prints ``ready`` once every member reads, stamps
``time.time_ns()`` when each entry is applied, prints ``done`` once every group has applied
EVENTS entries (or SECONDS have passed), and writes ``{group: {entry_id: ns}}`` as JSON
to OUTFILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio

from cachebus.bench.registry import bench_registry
from cachebus.consumers import ConsumerObserver
from cachebus.consumers.plan import Delivered
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.service import ConsumerService

NAMESPACE = "items"


class _Stamp(ConsumerObserver):
    def __init__(self, events: int, done: asyncio.Event) -> None:
        self.applied: dict[str, int] = {}
        self.events, self.done = events, done

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        now = time.time_ns()
        for item in delivered:
            self.applied[item.entry_id] = now
        if len(self.applied) >= self.events:
            self.done.set()


async def ours(
    url: str, prefix: str, groups: list[str], events: int, seconds: float
) -> dict[str, dict[str, int]]:
    stamps = {g: _Stamp(events, asyncio.Event()) for g in groups}
    async with contextlib.AsyncExitStack() as stack:
        for group in groups:
            service = ConsumerService.from_url(
                url, registry=bench_registry(), service=group, namespaces=[NAMESPACE],
                observers=[stamps[group]],
                settings={"prefix": prefix, "consumer": f"{group}-1", "read_count": 100,
                          "block_ms": 1000, "socket_timeout": 5.0, "traces": False,
                          "metrics": False},
            )  # fmt: skip
            await stack.enter_async_context(service)
            if not await service.wait_ready(30.0):
                raise RuntimeError(f"group {group} not ready: {service.health().reasons}")
        print("ready", flush=True)
        waits = [asyncio.ensure_future(s.done.wait()) for s in stamps.values()]
        await asyncio.wait(waits, timeout=seconds)
        print("done", flush=True)  # before closing: the bench's CPU window ends here
        for wait in waits:
            wait.cancel()
    return {g: s.applied for g, s in stamps.items()}


async def _raw_member(
    client: redis.asyncio.Redis, stream: str, group: str, root: str, applied: dict[str, int],
    events: int,
) -> None:  # fmt: skip
    loads = orjson.loads
    while len(applied) < events:
        reply: Any = await client.xreadgroup(group, f"{group}-1", {stream: ">"}, 100, 1000)
        if not reply:
            continue
        entries = reply[0][1]
        keys = [
            root + ident
            for _, fields in entries
            for ident in loads(loads(fields[b"__data__"])["data"])["keys"]
        ]
        await client.unlink(*keys)
        now = time.time_ns()
        for entry_id, _ in entries:
            applied[entry_id.decode()] = now
        await client.xack(stream, group, *[entry_id for entry_id, _ in entries])


async def raw(
    url: str, prefix: str, groups: list[str], events: int, seconds: float
) -> dict[str, dict[str, int]]:
    stream = StreamKeys(prefix).stream("inval")
    # One connection per member, as each of our members has its own pool.
    clients = {g: redis.asyncio.Redis.from_url(url, socket_timeout=5.0) for g in groups}
    applied: dict[str, dict[str, int]] = {g: {} for g in groups}
    for group, client in clients.items():
        await client.xgroup_create(stream, group, id="$", mkstream=True)
    print("ready", flush=True)
    tasks = [
        asyncio.ensure_future(
            _raw_member(
                client, stream, group,
                f"{KeySpace(prefix=prefix, scope=group, registry=bench_registry()).root}"
                f"{NAMESPACE}:",
                applied[group], events,
            )
        )
        for group, client in clients.items()
    ]  # fmt: skip
    await asyncio.wait(tasks, timeout=seconds)
    print("done", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients.values():
        await client.aclose()
    return applied


MODES = {"cachebus": ours, "raw": raw}

if __name__ == "__main__":
    logging.getLogger("cachebus").setLevel(logging.ERROR)  # a new group's flush, times 50
    mode, url, prefix, names, count, seconds, out = sys.argv[1:8]
    result = asyncio.run(MODES[mode](url, prefix, names.split(","), int(count), float(seconds)))
    with open(out, "wb") as fh:
        fh.write(orjson.dumps(result))
