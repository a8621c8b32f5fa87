"""``cachebus bench fanout``: the cost of one more service, as groups are added to one stream.

For each group count (``--groups``, default 1, 10 and 50) and each consumer kind, a fresh
stream gets one member per group, spread over two worker processes (the machine's two cores);
this process publishes ``--rate`` events/s for ``--seconds`` with our SyncProducer (the same
producer and envelope for both kinds, so the publish side costs the same), then waits until
every group has applied every event:

* ``cachebus``: our ConsumerService per group (decode, validate, apply, ack, gap checks);
* ``raw``: an XREADGROUP BLOCK loop per group: orjson to find the keys, one UNLINK, one XACK.

Measured: the Redis server's CPU per published event (``INFO CPU`` used_cpu_sys +
used_cpu_user, before the first publish and after the last group applied the last event,
less what the server spends on its own with no client, measured first for 2 s),
and publish → applied latency over every (event, group). ``cpu_ratio_50`` is cachebus over
raw at 50 groups; ``scale_50_over_1`` is cachebus's CPU per event at 50 groups over 1 group
(flat per group: at most 55).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import redis
import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit, percentile
from cachebus.bench.e2e import _paced
from cachebus.bench.registry import bench_registry
from cachebus.contracts.keys import StreamKeys
from cachebus.core.connection import RedisSettings
from cachebus.producers import SyncProducer
from cachebus.testing import RedisServer

__all__ = ["fanout"]

MODES = ("cachebus", "raw")
WORKERS = 2


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _idle_cpu_rate(url: str, seconds: float) -> float:
    """The server's own CPU per second with no client (its cron): subtracted from each run."""
    client = redis.Redis.from_url(url)
    try:
        cpu, started = _server_cpu(client), time.monotonic()
        time.sleep(seconds)
        return (_server_cpu(client) - cpu) / (time.monotonic() - started)
    finally:
        client.close()


def _run(
    url: str, mode: str, groups: int, rate: int, seconds: float, idle: float
) -> tuple[float, list[float], int, int]:
    """(server CPU seconds, latencies in ms, events sent, (event, group) pairs not applied)."""
    prefix = f"fan{groups}{mode[0]}"
    names = [f"svc{i}" for i in range(groups)]
    events = int(rate * seconds)
    drain = seconds + 30.0
    client = redis.Redis.from_url(url)
    with tempfile.TemporaryDirectory() as tmp:
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        try:
            for w in range(min(WORKERS, groups)):
                out = Path(tmp) / f"applied-{w}.json"
                share = ",".join(names[w::WORKERS])
                argv = [sys.executable, "-m", "cachebus.bench._fanout_worker", mode, url,
                        prefix, share, str(events), str(drain), str(out)]  # fmt: skip
                procs.append((subprocess.Popen(argv, stdout=subprocess.PIPE), out))
            for proc, _ in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != b"ready":
                    raise RuntimeError(f"a {mode} fan-out worker did not start")
            producer = SyncProducer(
                RedisSettings.from_url(url), producer_name="api", keys=StreamKeys(prefix),
                registry=bench_registry(),
            )  # fmt: skip
            cpu, window = _server_cpu(client), time.monotonic()
            sent = _paced(rate, seconds, lambda i: producer.invalidate_keys("items", [f"k{i}"]))
            for proc, _ in procs:
                assert proc.stdout is not None
                proc.stdout.readline()  # "done" (or EOF): every group of that worker applied
            cpu = _server_cpu(client) - cpu - idle * (time.monotonic() - window)
            for proc, _ in procs:
                proc.wait(timeout=30)
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            client.close()
        applied: dict[str, dict[str, int]] = {}
        for _, out in procs:
            if out.exists():
                applied.update(orjson.loads(out.read_bytes()))
    latencies = [
        (stamps[entry] - at) / 1e6
        for stamps in applied.values()
        for entry, at in sent.items()
        if entry in stamps
    ]
    return cpu, latencies, len(sent), len(sent) * groups - len(latencies)


@bench_app.command("fanout")
def fanout(
    groups: str = typer.Option("1,10,50", help="Group counts, comma-separated."),
    rate: int = typer.Option(50, help="Events per second (every group applies each)."),
    seconds: float = typer.Option(5.0, help="How long each run publishes."),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Server CPU per event and latency as consumer groups are added: cachebus vs raw."""
    counts = sorted({int(g) for g in groups.split(",") if g.strip()})
    if not counts or counts[0] < 1:
        raise typer.BadParameter("--groups: give positive counts, such as 1,10,50")
    rows = []
    cpu_us: dict[str, dict[int, float]] = {m: {} for m in MODES}
    p99: dict[str, dict[int, float]] = {m: {} for m in MODES}
    lost: dict[str, dict[int, int]] = {m: {} for m in MODES}
    started = time.monotonic()
    with RedisServer() as server:
        idle = _idle_cpu_rate(server.url, 2.0)
        for count in counts:
            for mode in MODES:
                cpu, lat, sent, missing = _run(server.url, mode, count, rate, seconds, idle)
                cpu_us[mode][count] = cpu * 1e6 / max(sent, 1)
                p99[mode][count] = percentile(lat, 99)
                lost[mode][count] = missing
                rows.append(
                    (count, mode, sent, missing, cpu_us[mode][count], percentile(lat, 50),
                     p99[mode][count])
                )  # fmt: skip
    ours, raw = cpu_us["cachebus"], cpu_us["raw"]
    summary = {
        "rate": rate,
        "seconds": seconds,
        "groups": counts,
        "elapsed_s": round(time.monotonic() - started, 1),
        "idle_server_cpu_us_per_s": round(idle * 1e6, 1),
        "cpu_us_per_event": {m: {str(g): round(v, 2) for g, v in cpu_us[m].items()} for m in MODES},
        "p99_ms": {m: {str(g): round(v, 3) for g, v in p99[m].items()} for m in MODES},
        "lost": {m: {str(g): v for g, v in lost[m].items()} for m in MODES},
        # The targets: <= 1.5 (cachebus over raw at 50 groups); <= 55 (flat per group).
        "cpu_ratio_50": round(ours[50] / raw[50], 3) if 50 in ours and raw.get(50) else None,
        "scale_50_over_1": round(ours[50] / ours[1], 3) if 50 in ours and ours.get(1) else None,
    }
    emit(
        f"fanout: {rate} events/s for {seconds:g} s to 1 member per group",
        ["groups", "consumer", "events", "lost", "server CPU µs/event", "p50 ms", "p99 ms"],
        rows,
        summary,
        as_json=json_out,
        notes=["server CPU: INFO CPU used_cpu_sys + used_cpu_user, publish and consume alike."],
    )
