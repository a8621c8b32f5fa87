"""``cachebus bench publish``: our producer against raw redis-py XADD of the same entries.

On its own scratch redis-server (no persistence). Each round runs every pair of cases (raw,
then ours, or the other way round every other round) back to back, so a slow moment of a
shared machine hits both sides of a pair alike; the report gives the median rate per case and
the median over rounds of the paired ratios ours/raw. Our side builds,
validates and encodes every event inside the timed loop (as a service would); the raw side
sends pre-encoded field dicts of the same events, with the same ``MAXLEN ~`` cap.

``batch_ratio`` (async, batched: the lower of the 100- and 1000-event batches; target >= 0.8)
and ``single_ratio`` (async, one event per await; target >= 0.7) are the headline figures;
the sync facade's ratios are reported beside them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import redis
import redis.asyncio
import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit
from cachebus.bench.registry import bench_registry
from cachebus.contracts.codec import encode_payload
from cachebus.contracts.factory import EventFactory
from cachebus.contracts.keys import StreamKeys
from cachebus.producers import Producer, SyncProducer
from cachebus.producers._core import DEFAULT_MAXLEN
from cachebus.testing import RedisServer, ServerOptions

__all__ = ["run"]

NAMESPACE = "docs"
REASON = "bench"
Case = tuple[str, str, str, int]  # (api, side, mode, batch size)
CASES: list[Case] = [
    (api, side, mode, size)
    for api in ("async", "sync")
    for mode, size in (("single", 1), ("batch", 100), ("batch", 1000))
    for side in ("raw", "ours")
]


def _ids(count: int) -> list[str]:
    return [f"{i}:all" for i in range(count)]


def _fields(count: int) -> list[dict[str, bytes]]:
    factory = EventFactory("bench", bench_registry())
    return [
        {"__data__": encode_payload(factory.keys_payload(NAMESPACE, [i], REASON))}
        for i in _ids(count)
    ]


async def _async_case(
    case: Case, count: int, producer: Producer, client: redis.asyncio.Redis, stream: str
) -> float:
    _, side, mode, size = case
    ids = _ids(count)
    fields = _fields(count) if side == "raw" else []
    started = time.perf_counter()
    if side == "raw" and mode == "single":
        for f in fields:
            await client.xadd(stream, f, maxlen=DEFAULT_MAXLEN, approximate=True)  # type: ignore[arg-type]
    elif side == "raw":
        for start in range(0, count, size):
            pipe = client.pipeline(transaction=False)
            for f in fields[start : start + size]:
                pipe.xadd(stream, f, maxlen=DEFAULT_MAXLEN, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()
    elif mode == "single":
        for i in ids:
            await producer.invalidate_keys(NAMESPACE, [i], reason=REASON)
    else:
        for start in range(0, count, size):
            async with producer.batch() as batch:
                for i in ids[start : start + size]:
                    batch.invalidate_keys(NAMESPACE, [i], reason=REASON)
    return count / (time.perf_counter() - started)


def _sync_case(
    case: Case, count: int, producer: SyncProducer, client: redis.Redis, stream: str
) -> float:
    _, side, mode, size = case
    ids = _ids(count)
    fields = _fields(count) if side == "raw" else []
    started = time.perf_counter()
    if side == "raw" and mode == "single":
        for f in fields:
            client.xadd(stream, f, maxlen=DEFAULT_MAXLEN, approximate=True)  # type: ignore[arg-type]
    elif side == "raw":
        for start in range(0, count, size):
            pipe = client.pipeline(transaction=False)
            for f in fields[start : start + size]:
                pipe.xadd(stream, f, maxlen=DEFAULT_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.execute()
    elif mode == "single":
        for i in ids:
            producer.invalidate_keys(NAMESPACE, [i], reason=REASON)
    else:
        for start in range(0, count, size):
            with producer.batch() as batch:
                for i in ids[start : start + size]:
                    batch.invalidate_keys(NAMESPACE, [i], reason=REASON)
    return count / (time.perf_counter() - started)


Pair = tuple[str, str, int]  # (api, mode, batch size)
PAIRS: list[Pair] = [(c[0], c[2], c[3]) for c in CASES if c[1] == "raw"]


def _orders(round_no: int) -> tuple[str, str]:
    # Alternate who goes first, so a drift in machine load favours neither side.
    return ("raw", "ours") if round_no % 2 == 0 else ("ours", "raw")


async def _async_round(
    url: str, counts: dict[str, int], rates: dict[Case, list[float]], round_no: int
) -> None:
    keys = StreamKeys("bench")
    stream = keys.stream("inval")
    client = redis.asyncio.Redis.from_url(url, socket_timeout=10)
    producer = Producer.from_url(url, producer_name="bench", keys=keys, socket_timeout=10)
    try:
        for api, mode, size in PAIRS:
            if api != "async":
                continue
            for side in _orders(round_no):
                case = (api, side, mode, size)
                rates[case].append(await _async_case(case, counts[mode], producer, client, stream))
                await client.delete(stream)
    finally:
        await producer.aclose()
        await client.aclose()


def _sync_round(
    url: str, counts: dict[str, int], rates: dict[Case, list[float]], round_no: int
) -> None:
    keys = StreamKeys("bench")
    stream = keys.stream("inval")
    client = redis.Redis.from_url(url, socket_timeout=10)
    with SyncProducer.from_url(
        url, producer_name="bench", keys=keys, socket_timeout=10
    ) as producer:
        for api, mode, size in PAIRS:
            if api != "sync":
                continue
            for side in _orders(round_no):
                case = (api, side, mode, size)
                rates[case].append(_sync_case(case, counts[mode], producer, client, stream))
                client.delete(stream)
    client.close()


def _ratio(rates: dict[Case, list[float]], api: str, mode: str, size: int) -> float:
    """Median over rounds of ours/raw, each pair measured back to back."""
    ours, raw = rates[(api, "ours", mode, size)], rates[(api, "raw", mode, size)]
    return statistics.median(o / r for o, r in zip(ours, raw, strict=True))


def run(events: int, single_events: int, repeats: int) -> dict[str, Any]:
    """Run every pair of cases ``repeats`` times; returns the summary (and raw rates)."""
    counts = {"single": single_events, "batch": events}
    rates: dict[Case, list[float]] = {case: [] for case in CASES}
    with RedisServer(ServerOptions()) as server:
        warm: dict[Case, list[float]] = {case: [] for case in CASES}
        asyncio.run(_async_round(server.url, {"single": 200, "batch": 2000}, warm, 0))
        _sync_round(server.url, {"single": 200, "batch": 2000}, warm, 0)
        for round_no in range(repeats):
            asyncio.run(_async_round(server.url, counts, rates, round_no))
            _sync_round(server.url, counts, rates, round_no)
        info = server.client().info("server")
    medians = {"_".join(map(str, case)): statistics.median(r) for case, r in rates.items()}
    summary: dict[str, Any] = {
        "events": events,
        "single_events": single_events,
        "repeats": repeats,
        "redis_version": info["redis_version"],
        "rates_ev_per_s": medians,
        "batch_ratio_100": _ratio(rates, "async", "batch", 100),
        "batch_ratio_1000": _ratio(rates, "async", "batch", 1000),
        "single_ratio": _ratio(rates, "async", "single", 1),
        "sync_batch_ratio_100": _ratio(rates, "sync", "batch", 100),
        "sync_batch_ratio_1000": _ratio(rates, "sync", "batch", 1000),
        "sync_single_ratio": _ratio(rates, "sync", "single", 1),
    }
    summary["batch_ratio"] = min(summary["batch_ratio_100"], summary["batch_ratio_1000"])
    summary["sync_batch_ratio"] = min(
        summary["sync_batch_ratio_100"], summary["sync_batch_ratio_1000"]
    )
    summary["rates"] = rates
    return summary


@bench_app.command("publish")
def publish(
    events: int = typer.Option(10_000, help="Events per batched case and round."),
    single_events: int = typer.Option(1_000, help="Events per one-at-a-time case and round."),
    repeats: int = typer.Option(9, help="Rounds; medians are reported."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Our producer (single, batches of 100/1000, async and sync) vs raw pipelined XADD."""
    summary = run(events, single_events, repeats)
    rates: dict[Case, list[float]] = summary.pop("rates")
    rows = []
    for api in ("async", "sync"):
        for mode, size in (("single", 1), ("batch", 100), ("batch", 1000)):
            raw = statistics.median(rates[(api, "raw", mode, size)])
            ours = statistics.median(rates[(api, "ours", mode, size)])
            label = f"{api} {'one per call' if mode == 'single' else f'batch {size}'}"
            rows.append([label, raw, ours, _ratio(rates, api, mode, size)])
    emit(
        "publish",
        ["case", "raw XADD ev/s", "ours ev/s", "ours/raw (median of rounds)"],
        rows,
        summary,
        as_json=as_json,
        notes=[
            f"targets: batch_ratio >= 0.8 (got {summary['batch_ratio']:.2f}), "
            f"single_ratio >= 0.7 (got {summary['single_ratio']:.2f}); "
            f"{repeats} interleaved rounds, validation on"
        ],
    )
