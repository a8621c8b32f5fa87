"""``cachebus bench cluster``: publish and consume events/s with 1 and 3 partitions.

On a scratch Redis Cluster of 3 primaries (``--replicas`` each), the same workload runs with
the stream in one partition (N = 1: one stream key, on one primary) and in three (N = 3:
one partition per primary), interleaved over ``--repeats`` rounds so a slow moment of a
shared machine hits both alike. Every worker is its own process, started before the clock
and released at once:

* publish: ``--publishers`` processes send ``--events`` single-key invalidations in batches
  of ``--batch`` through :class:`cachebus.producers.Producer` on a cluster client;
* consume: one group-mode consumer process per partition (1 for N = 1, 3 for N = 3) drains
  that backlog into a cache on the same cluster, every key really cached and UNLINKed, with
  order per key kept (one member per partition; several members of one stream would not
  keep it).

``scale_ratio`` is the sustained pipeline rate, ``min(publish, consume)``, of N = 3 over
N = 1 (medians). Both sides and the Redis servers share this machine's cores, so the ratio
is bounded by them; on separate machines each partition brings its own primary and consumer.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import orjson
import redis
import redis.cluster
import typer

from cachebus.bench import bench_app
from cachebus.bench._cluster_worker import GROUP, SPACE, streams
from cachebus.bench._report import emit
from cachebus.testing.cluster import RedisClusterHarness

__all__ = ["cluster"]

WORKER = "cachebus.bench._cluster_worker"


def _reset(harness: RedisClusterHarness) -> None:
    for node in harness.primaries():
        client = node.client()
        client.flushall()
        client.close()


def _prepare(client: redis.cluster.RedisCluster, partitions: int, events: int) -> None:
    for part in streams(partitions).all_partitions():
        client.xgroup_create(part.stream("inval"), GROUP, id="0", mkstream=True)
    for base in range(0, events, 5000):
        batch = {SPACE.key("items", f"k{i}"): b"v" for i in range(base, min(base + 5000, events))}
        client.mset_nonatomic(batch)


def _remaining(client: redis.cluster.RedisCluster, events: int) -> int:
    left = 0
    for base in range(0, events, 5000):
        names = [SPACE.key("items", f"k{i}") for i in range(base, min(base + 5000, events))]
        left += int(client.exists(*names))
    return left


def _run_workers(commands: list[list[str]], timeout: float) -> float:
    """Start every worker, wait until all are ready, release them at once; wall seconds."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", WORKER, *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"bench worker {proc.args!r} did not start: {line!r}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list[dict[str, Any]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"bench worker {proc.args!r} failed ({proc.returncode})")
            results.append(orjson.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    start = min(int(r["start_ns"]) for r in results)
    end = max(int(r["end_ns"]) for r in results)
    return (end - start) / 1e9


def _round(
    harness: RedisClusterHarness,
    partitions: int,
    events: int,
    publishers: int,
    batch: int,
    count: int,
) -> tuple[float, float]:
    _reset(harness)
    url = harness.url
    client = harness.client(socket_timeout=30)
    try:
        _prepare(client, partitions, events)
        share = -(-events // publishers)
        publish_cmds = [
            ["publish", url, str(partitions), str(first), str(min(share, events - first)),
             str(batch)]
            for first in range(0, events, share)
        ]  # fmt: skip
        publish_s = _run_workers(publish_cmds, timeout=600)
        lengths = [
            int(client.xlen(p.stream("inval"))) for p in streams(partitions).all_partitions()
        ]
        if sum(lengths) != events:
            raise RuntimeError(f"published {sum(lengths)} entries, expected {events}")
        consume_cmds = [
            ["consume", url, str(partitions), str(p), str(n), str(count)]
            for p, n in enumerate(lengths)
        ]
        consume_s = _run_workers(consume_cmds, timeout=600)
        left = _remaining(client, events)
        if left:
            raise RuntimeError(f"{left} of {events} cached keys were not invalidated")
    finally:
        client.close()
    return events / publish_s, events / consume_s


@bench_app.command("cluster")
def cluster(
    events: int = typer.Option(60_000, help="Events per run (one key each)."),
    publishers: int = typer.Option(2, help="Publisher processes."),
    batch: int = typer.Option(100, help="Events per publish round trip."),
    count: int = typer.Option(500, help="Entries per consumer read."),
    replicas: int = typer.Option(0, help="Replicas per primary."),
    repeats: int = typer.Option(2, help="Interleaved rounds; medians are reported."),
    json_out: bool = typer.Option(False, "--json", help="End with one JSON line."),
) -> None:
    """Publish and consume events/s on a 3-primary cluster with 1 and 3 partitions."""
    rates: dict[int, dict[str, list[float]]] = {n: {"publish": [], "consume": []} for n in (1, 3)}
    started = time.monotonic()
    with RedisClusterHarness(3, replicas) as harness:
        for repeat in range(repeats):
            for n in (1, 3) if repeat % 2 == 0 else (3, 1):
                publish_eps, consume_eps = _round(harness, n, events, publishers, batch, count)
                rates[n]["publish"].append(publish_eps)
                rates[n]["consume"].append(consume_eps)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rates.items()}
    pipeline = {n: min(med[n]["publish"], med[n]["consume"]) for n in (1, 3)}
    rows = [
        (f"N={n}", med[n]["publish"], med[n]["consume"], pipeline[n], n, publishers) for n in (1, 3)
    ]
    summary = {
        "events": events,
        "publishers": publishers,
        "batch": batch,
        "count": count,
        "primaries": 3,
        "replicas_per_primary": replicas,
        "repeats": repeats,
        "publish_eps_n1": round(med[1]["publish"]),
        "publish_eps_n3": round(med[3]["publish"]),
        "consume_eps_n1": round(med[1]["consume"]),
        "consume_eps_n3": round(med[3]["consume"]),
        "publish_scale_ratio": round(med[3]["publish"] / med[1]["publish"], 3),
        "consume_scale_ratio": round(med[3]["consume"] / med[1]["consume"], 3),
        "scale_ratio": round(pipeline[3] / pipeline[1], 3),
        "seconds": round(time.monotonic() - started, 1),
    }
    emit(
        f"cluster: {events:,} events, 3 primaries, 1 vs 3 partitions (events/s, medians)",
        ["partitions", "publish ev/s", "consume ev/s", "pipeline ev/s", "consumers", "publishers"],
        rows,
        summary,
        as_json=json_out,
        notes=[
            "consume: one consumer process per partition, order per key kept; every key cached "
            "and UNLINKed on the same cluster.",
            "All servers and workers share this machine's cores: the ratio is bounded by them.",
        ],
    )
