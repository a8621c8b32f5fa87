"""``cachebus bench scan``: remove one namespace's keys three ways, on a scratch redis-server.

Loads ``--keys`` keys (``--match`` of them in the ``positions`` namespace, the rest in
``market`` and ``prices``), then removes the positions three ways, reloading between them:

* ``keys+del``: the audit's code, ``KEYS pattern`` then one ``DEL`` of everything found;
* ``scan+unlink``: ours, ``Cache.invalidate_pattern`` (SCAN MATCH COUNT 1000 + batched UNLINK);
* ``generation``: ours, ``Cache.flush_namespace`` (one INCR; old values age out by TTL).

For each: wall time, the longest single command the server ran (SLOWLOG with a 0 µs threshold,
so every command is logged), server CPU in commands (INFO commandstats), and the PING p99/max
seen meanwhile by a separate process on its own connection.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import typer

from cachebus.bench import bench_app
from cachebus.bench._pinger import read_samples
from cachebus.bench._report import emit, percentile
from cachebus.bench.registry import bench_registry
from cachebus.contracts.keys import KeySpace
from cachebus.core import Cache, CacheConfig
from cachebus.testing import RedisServer, ServerOptions

__all__ = ["scan"]

_IGNORED = {"ping", "slowlog", "info", "config"}
_PINGER = (
    "import sys; from pathlib import Path; from cachebus.bench._pinger import run; "
    "run(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))"
)


@dataclass
class Method:
    name: str
    wall_ms: float
    longest_ms: float
    longest_cmd: str
    server_ms: float
    calls: int
    window: tuple[int, int]
    removed: int


def _ids(count: int) -> list[str]:
    # 1000 users' positions, as ids of the positions namespace: '0x<wallet>:<n>'.
    return [f"0x{i % 1000:040x}:{i // 1000}" for i in range(count)]


def _load(client: redis.Redis, ks: KeySpace, namespace: str, ids: list[str]) -> None:
    value = b"x" * 45  # the baseline's ~45-byte values
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ids), 1000):
        pipe.mset({ks.key(namespace, i): value for i in ids[start : start + 1000]})
        if (start // 1000) % 50 == 49:
            pipe.execute()
    pipe.execute()


def _reset(client: redis.Redis) -> None:
    client.execute_command("SLOWLOG", "RESET")
    client.execute_command("CONFIG", "RESETSTAT")


def _observe(client: redis.Redis) -> tuple[float, str, float, int]:
    """Longest command (ms, name), server time in commands (ms) and call count since _reset."""
    longest, name = 0.0, "-"
    for entry in client.slowlog_get(-1):
        command = entry["command"]
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        word = str(command).split(" ", 1)[0].lower()
        if word in _IGNORED:
            continue
        if entry["duration"] / 1000.0 > longest:
            longest, name = entry["duration"] / 1000.0, word
    busy_us, calls = 0, 0
    for key, stat in client.info("commandstats").items():
        if key.removeprefix("cmdstat_") not in _IGNORED:
            busy_us += int(stat["usec"])
            calls += int(stat["calls"])
    return longest, name, busy_us / 1000.0, calls


async def _ours(url: str, ks: KeySpace, match: int, flushes: int) -> dict[str, Any]:
    """Runs our two methods; the KEYS baseline runs synchronously around it."""
    config = CacheConfig(pattern_max_keys=max(match * 2, 1))
    async with Cache.from_url(url, ks, config) as cache:
        await cache.get("bystanders", "warmup:0")  # opens the connection (no such key)
        started = time.monotonic_ns()
        result = await cache.invalidate_pattern("scanned", "0x*")
        ended = time.monotonic_ns()
        return {"window": (started, ended), "result": result}


async def _flushes(url: str, ks: KeySpace, count: int) -> tuple[list[float], tuple[int, int]]:
    async with Cache.from_url(url, ks) as cache:
        await cache.flush_namespace("bystanders")  # warm: connection and script
        durations = []
        first = time.monotonic_ns()
        for _ in range(count):
            started = time.perf_counter()
            await cache.flush_namespace("scanned")
            durations.append((time.perf_counter() - started) * 1000.0)
        return durations, (first, time.monotonic_ns())


def _pings_in(samples: list[tuple[int, int]], window: tuple[int, int]) -> list[float]:
    return [rtt / 1e6 for sent, rtt in samples if window[0] <= sent <= window[1]]


@bench_app.command("scan")
def scan(
    keys: int = typer.Option(1_000_000, help="keys loaded in total"),
    match: int = typer.Option(100_000, help="keys of the namespace that is removed"),
    flushes: int = typer.Option(101, help="namespace flushes timed for generation_flush_ms"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object last"),
) -> None:
    """KEYS+DEL vs SCAN+UNLINK vs generation flush on a scratch redis-server."""
    if not 0 < match < keys:
        raise typer.BadParameter("need 0 < --match < --keys")
    ks = KeySpace(prefix="bench", scope="scan", registry=bench_registry())
    others = keys - match
    options = ServerOptions(
        extra=(("slowlog-log-slower-than", "0"), ("slowlog-max-len", "1000000"))
    )
    with (
        tempfile.TemporaryDirectory(prefix="cachebus-bench-") as tmp,
        RedisServer(options) as server,
    ):
        client = server.client(socket_timeout=60)
        positions = _ids(match)
        load_started = time.perf_counter()
        _load(client, ks, "bystanders", [f"market:{i}" for i in range(others // 2)])
        _load(client, ks, "bystanders", [f"price:{i}" for i in range(others - others // 2)])
        _load(client, ks, "scanned", positions)
        load_s = time.perf_counter() - load_started
        out = Path(tmp) / "pings.bin"
        pinger = subprocess.Popen(
            [sys.executable, "-c", _PINGER, server.host, str(server.port), str(out)],
            stdout=subprocess.PIPE,
        )
        try:
            assert pinger.stdout is not None
            pinger.stdout.readline()  # "ready"
            time.sleep(0.2)
            methods = _run_methods(client, server.url, ks, positions, match, flushes)
        finally:
            pinger.terminate()
            pinger.wait(timeout=10)
        samples = read_samples(out)
        client.close()
    _report(methods, samples, keys, match, load_s, as_json)


def _run_methods(
    client: redis.Redis, url: str, ks: KeySpace, positions: list[str], match: int, flushes: int
) -> dict[str, Any]:
    pattern = ks.match("scanned", "0x*")
    before = int(client.dbsize())
    _reset(client)
    started = time.monotonic_ns()
    found = client.execute_command("KEYS", pattern)  # the audit's baseline, on purpose
    removed = int(client.execute_command("DEL", *found)) if found else 0
    ended = time.monotonic_ns()
    keys_del = Method(
        "keys+del", (ended - started) / 1e6, *_observe(client), (started, ended), removed
    )

    _load(client, ks, "scanned", positions)
    _reset(client)
    ours = asyncio.run(_ours(url, ks, match, flushes))
    window = ours["window"]
    longest, name, busy, calls = _observe(client)
    scan_unlink = Method(
        "scan+unlink", (window[1] - window[0]) / 1e6, longest, name, busy, calls, window,
        ours["result"].deleted,
    )  # fmt: skip
    if int(client.dbsize()) != before - match:
        raise RuntimeError(f"SCAN+UNLINK removed {before - int(client.dbsize())} keys, not {match}")

    _load(client, ks, "scanned", positions)
    _reset(client)
    durations, window = asyncio.run(_flushes(url, ks, flushes))
    longest, name, busy, calls = _observe(client)
    generation = Method(
        "generation", statistics.median(durations), longest, name, busy / max(flushes, 1),
        calls, window, match,
    )  # fmt: skip
    return {"methods": [keys_del, scan_unlink, generation], "flush_ms": durations}


def _report(
    run: dict[str, Any], samples: list[tuple[int, int]], keys: int, match: int, load_s: float,
    as_json: bool,
) -> None:  # fmt: skip
    methods: list[Method] = run["methods"]
    rows = []
    summary: dict[str, Any] = {"keys": keys, "match": match, "load_s": round(load_s, 2)}
    for m in methods:
        pings = _pings_in(samples, m.window)
        p99 = percentile(pings, 99) if pings else None
        peak = max(pings) if pings else None
        rows.append(
            [m.name, m.wall_ms, m.longest_ms, m.longest_cmd, m.server_ms, m.calls,
             p99 if p99 is not None else "-", peak if peak is not None else "-", len(pings)]
        )  # fmt: skip
        summary[m.name.replace("+", "_")] = {
            "wall_ms": round(m.wall_ms, 3),
            "longest_cmd_ms": round(m.longest_ms, 3),
            "longest_cmd": m.longest_cmd,
            "server_ms": round(m.server_ms, 3),
            "calls": m.calls,
            "removed": m.removed,
            "ping_p99_ms": None if p99 is None else round(p99, 3),
            "ping_max_ms": None if peak is None else round(peak, 3),
            "pings": len(pings),
        }
    keys_del, ours = methods[0], methods[1]
    stall_ratio = keys_del.longest_ms / ours.longest_ms if ours.longest_ms else float("inf")
    flush_ms: list[float] = run["flush_ms"]
    summary.update(
        stall_ratio=round(stall_ratio, 1),
        generation_flush_ms=round(statistics.median(flush_ms), 4),
        generation_flush_p99_ms=round(percentile(flush_ms, 99), 4),
        generation_flush_max_ms=round(max(flush_ms), 4),
        targets={"stall_ratio": ">= 20", "generation_flush_ms": "<= 1"},
    )
    summary["pass"] = stall_ratio >= 20 and summary["generation_flush_ms"] <= 1.0
    emit(
        f"pattern invalidation: {match:,} of {keys:,} keys",
        ["method", "wall ms", "longest ms", "cmd", "server ms", "calls", "PING p99",
         "PING max", "pings"],
        rows,
        summary,
        as_json=as_json,
        notes=[
            f"stall ratio (KEYS+DEL longest command / ours): {stall_ratio:.1f}x (target >= 20)",
            f"generation flush: median {summary['generation_flush_ms']} ms over {len(flush_ms)} "
            "flushes, client round trip (target <= 1 ms); its row shows the median and "
            "server ms per flush",
        ],
    )  # fmt: skip
