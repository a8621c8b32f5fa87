"""``cachebus bench e2e``: publish → applied latency at a steady rate, three ways, one run.

A producer (this process; sync, one call per event, on an absolute schedule) publishes
``--rate`` events/s for ``--seconds``; a consumer in another process applies each event (an
UNLINK of its key) and stamps the time. Latency is from just before the publish call to just
after the apply, on the same clock:

* ``cachebus``: our SyncProducer → stream → our Consumer (decode, validate, apply through the
  cache core) — the ack follows the apply and is not counted;
* ``raw-stream``: raw XADD → XREADGROUP COUNT 100 + pipelined UNLINK (ack not counted);
* ``pubsub``: PUBLISH → subscriber → UNLINK (what the audit proposed; loses messages when the
  subscriber is away, which this benchmark does not exercise).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import redis
import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit, percentile
from cachebus.bench.registry import bench_registry
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core.connection import RedisSettings
from cachebus.producers import SyncProducer
from cachebus.testing import RedisServer

__all__ = ["e2e"]

PREFIX = "e2e"  # the same names as cachebus.bench._e2e_consumer (not imported: it runs with -m)
SPACE = KeySpace(prefix=PREFIX, scope="bot", registry=bench_registry())
STREAMS = StreamKeys(PREFIX)


def _paced(rate: int, seconds: float, send: Callable[[int], str]) -> dict[str, int]:
    """Call ``send(i)`` on an absolute schedule; returns {id: send_ns}."""
    total = int(rate * seconds)
    interval = 1.0 / rate
    sent: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(total):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # never spin: the consumer needs the other core
        t = time.time_ns()
        sent[send(i)] = t
    return sent


def _run_mode(mode: str, url: str, rate: int, seconds: float) -> tuple[list[float], int, int]:
    total = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "applied.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "cachebus.bench._e2e_consumer", mode, url, str(total), str(out)],
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the {mode} consumer did not start")
            if mode == "cachebus":
                producer = SyncProducer(
                    RedisSettings.from_url(url), producer_name="api", keys=STREAMS,
                    registry=bench_registry(),
                )  # fmt: skip

                def send(i: int) -> str:
                    return producer.invalidate_keys("items", [f"k{i}"])

                sent = _paced(rate, seconds, send)
            else:
                client = redis.Redis.from_url(url)
                if mode == "raw-stream":

                    def send(i: int) -> str:
                        client.xadd(f"{PREFIX}:raw", {"i": i, "key": SPACE.key("items", f"k{i}")})
                        return str(i)
                else:

                    def send(i: int) -> str:
                        client.publish(f"{PREFIX}:pubsub", f"{i} {SPACE.key('items', f'k{i}')}")
                        return str(i)

                sent = _paced(rate, seconds, send)
            proc.wait(timeout=seconds + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        applied: dict[str, int] = orjson.loads(out.read_bytes()) if out.exists() else {}
    latencies = [(applied[k] - t) / 1e6 for k, t in sent.items() if k in applied]
    return latencies, len(sent), len(sent) - len(latencies)


def _ratio(ours: float, raw: float) -> float | None:
    return round(ours / raw, 3) if raw else None


@bench_app.command("e2e")
def e2e(
    rate: int = typer.Option(5000, help="Events per second."),
    seconds: float = typer.Option(10.0, help="How long each mode publishes."),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Publish → applied latency at a steady rate: cachebus vs raw stream vs pub/sub."""
    rows = []
    pct: dict[str, dict[str, float]] = {}
    lost: dict[str, int] = {}
    with RedisServer() as server:
        for mode in ("cachebus", "raw-stream", "pubsub"):
            lat, sent, missing = _run_mode(mode, server.url, rate, seconds)
            pct[mode] = {q: percentile(lat, float(q)) for q in ("50", "90", "99", "99.9")}
            lost[mode] = missing
            row = pct[mode]
            rows.append(
                (mode, sent, missing, row["50"], row["90"], row["99"], row["99.9"],
                 max(lat, default=0.0))
            )  # fmt: skip
    ours, raw = pct["cachebus"], pct["raw-stream"]
    summary = {
        "rate": rate,
        "seconds": seconds,
        "p50_ms": round(ours["50"], 3),
        "p99_ms": round(ours["99"], 3),
        "p999_ms": round(ours["99.9"], 3),
        "raw_p50_ms": round(raw["50"], 3),
        "raw_p99_ms": round(raw["99"], 3),
        "raw_p999_ms": round(raw["99.9"], 3),
        "pubsub_p99_ms": round(pct["pubsub"]["99"], 3),
        # The targets: cachebus over the raw stream, same run (lower is better).
        "raw_p50_ratio": _ratio(ours["50"], raw["50"]),
        "raw_p99_ratio": _ratio(ours["99"], raw["99"]),
        # Events published by cachebus and never applied; every mode's in lost_by_mode.
        "lost": lost["cachebus"],
        "lost_by_mode": lost,
    }
    emit(
        f"e2e: publish → applied latency at {rate:,} events/s for {seconds:g} s (ms)",
        ["mode", "sent", "lost", "p50", "p90", "p99", "p99.9", "max"],
        rows,
        summary,
        as_json=json_out,
    )
