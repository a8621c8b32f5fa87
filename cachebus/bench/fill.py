"""``cachebus bench fill``: what the guarded fill costs over plain cache-aside.

Every operation is a miss that loads (an instant loader) and stores, on a fresh key:

* ``cache-aside``: the audit's pattern with raw redis-py: ``GET``, load, ``SET PX``. Two round
  trips, and a late fill overwrites a newer invalidation (the race this project closes);
* ``ours``: :meth:`cachebus.core.Cache.get_or_set`: read (generation + value), take the lease
  (Lua: lease key, lease index, generation), load, fill (Lua: stored only while the lease,
  its index entry and the generation stand). Three round trips, race-free;
* ``@cached``: the same fill through ``@cache.cached`` on a function returning a dataclass:
  the key built from its arguments through the template, the value dumped to JSON by
  pydantic before it is stored.

Then hits, one round trip each: ``get_or_set`` (the stored JSON, untyped) against the
decorated function (the hit validated back into the dataclass): what a typed read costs.

Sequential awaits on one asyncio client each, on a scratch redis-server; the rounds of the two
methods are interleaved and the medians reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit
from cachebus.bench.registry import bench_registry
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache
from cachebus.testing import RedisServer, ServerOptions

__all__ = ["fill"]

_VALUE = {"user": 42, "positions": [{"market": "m1", "size": 10.5, "side": "yes"}]}


@dataclasses.dataclass
class _Position:
    market: str
    size: float
    side: str


@dataclasses.dataclass
class _Doc:
    user: int
    positions: list[_Position]


_DOC = _Doc(42, [_Position("m1", 10.5, "yes")])


async def _load() -> dict[str, Any]:
    return _VALUE


async def _timed(calls: Callable[[str], Awaitable[object]], idents: list[str]) -> float:
    started = time.perf_counter()
    for ident in idents:
        await calls(ident)
    return (time.perf_counter() - started) / len(idents) * 1e6


async def _cache_aside(client: redis.asyncio.Redis, keys: KeySpace, idents: list[str]) -> float:
    import orjson

    started = time.perf_counter()
    for ident in idents:
        key = keys.key("docs", ident)
        if await client.get(key) is None:
            value = await _load()
            await client.set(key, orjson.dumps(value), px=30_000)
    return (time.perf_counter() - started) / len(idents) * 1e6


async def _ours(cache: Cache, idents: list[str]) -> float:
    started = time.perf_counter()
    for ident in idents:
        await cache.get_or_set("docs", ident, _load)
    return (time.perf_counter() - started) / len(idents) * 1e6


async def run(fills: int, repeats: int) -> dict[str, Any]:
    server = await asyncio.to_thread(RedisServer(ServerOptions()).start)
    try:
        client = redis.asyncio.Redis.from_url(server.url)
        raw_keys = KeySpace(prefix="bench", scope="raw", registry=bench_registry())
        cache = Cache(client, KeySpace(prefix="bench", scope="ours", registry=bench_registry()))
        await _ours(cache, ["warm"])  # scripts loaded, generation created

        @cache.cached("docs", key=lambda ident: {"owner": "d", "doc": ident})
        async def doc(ident: str) -> _Doc:
            return _DOC

        def get_or_set(ident: str) -> Awaitable[object]:
            return cache.get_or_set("docs", ident, _load)

        raw_us: list[float] = []
        ours_us: list[float] = []
        cached_us: list[float] = []
        hit_us: list[float] = []
        typed_hit_us: list[float] = []
        for round_ in range(repeats):
            idents = [f"{round_}:{n}" for n in range(fills)]
            raw_us.append(await _cache_aside(client, raw_keys, idents))
            ours_us.append(await _ours(cache, idents))
            cached_us.append(await _timed(doc, idents))
            hit_us.append(await _timed(get_or_set, idents))
            typed_hit_us.append(await _timed(doc, idents))
        stored = cache.stats.sets
        await client.aclose()
    finally:
        await asyncio.to_thread(server.close)
    raw, ours = statistics.median(raw_us), statistics.median(ours_us)
    hit, typed_hit = statistics.median(hit_us), statistics.median(typed_hit_us)
    return {
        "fills_per_round": fills,
        "rounds": repeats,
        "cache_aside_us": round(raw, 1),
        "ours_us": round(ours, 1),
        "ours_over_cache_aside": round(ours / raw, 2),
        "ours_fills_per_s": round(1e6 / ours),
        "cached_us": round(statistics.median(cached_us), 1),
        "hit_us": round(hit, 1),
        "typed_hit_us": round(typed_hit, 1),
        "typed_hit_over_hit": round(typed_hit / hit, 2),
        "stored": stored,
        "refused": cache.stats.refused_fills,
    }


@bench_app.command("fill")
def fill(
    fills: int = typer.Option(2000, help="Misses filled per method and round."),
    repeats: int = typer.Option(7, help="Rounds; medians are reported."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Guarded get_or_set fills vs unguarded GET + SET cache-aside, per miss."""
    summary = asyncio.run(run(fills, repeats))
    emit(
        "fill",
        ["method", "µs per miss (median of rounds)", "round trips"],
        [
            ["cache-aside GET+SET (unguarded)", summary["cache_aside_us"], 2],
            ["ours get_or_set (lease-guarded)", summary["ours_us"], 3],
            ["ours @cached, typed (lease-guarded)", summary["cached_us"], 3],
            ["hit: get_or_set (JSON)", summary["hit_us"], 1],
            ["hit: @cached (validated into its type)", summary["typed_hit_us"], 1],
        ],
        summary,
        as_json=as_json,
        notes=[
            f"ours / cache-aside: {summary['ours_over_cache_aside']}x per miss",
            f"typed hit / JSON hit: {summary['typed_hit_over_hit']}x",
        ],
    )
