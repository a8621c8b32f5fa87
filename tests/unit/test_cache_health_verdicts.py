"""The audit's thresholds turned into verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from cachebus.core import HealthThresholds
from cachebus.core.health import Observations, Verdict, evaluate, overall

T = HealthThresholds()


def observe(**changes: Any) -> dict[str, Verdict]:
    base: dict[str, Any] = {
        "hits": 90,
        "misses": 10,
        "p95_ms": 1.0,
        "info": {"used_memory": 10, "maxmemory": 100, "connected_clients": 1, "maxclients": 100},
        "evictions_per_hour": 0.0,
        "pool_in_use": 1,
        "pool_cap": 50,
    }
    base.update(changes)
    return {m.name: m.verdict for m in evaluate(Observations(**base), T)}


@pytest.mark.parametrize(
    ("hits", "verdict"),
    [(85, Verdict.OK), (80, Verdict.OK), (75, Verdict.WARN), (69, Verdict.ALERT)],
)
def test_hit_rate_verdicts_follow_the_audit(hits: int, verdict: Verdict) -> None:
    assert observe(hits=hits, misses=100 - hits)["hit_rate"] is verdict


def test_too_few_reads_make_the_hit_rate_unknown() -> None:
    assert observe(hits=3, misses=5)["hit_rate"] is Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("used", "verdict"),
    [(60, Verdict.OK), (75, Verdict.WARN), (85, Verdict.ALERT), (95, Verdict.CRITICAL)],
)
def test_memory_verdicts_follow_the_audit(used: int, verdict: Verdict) -> None:
    assert observe(info={"used_memory": used, "maxmemory": 100})["memory"] is verdict


def test_without_maxmemory_memory_is_judged_against_the_host() -> None:
    metrics = evaluate(
        Observations(0, 0, None, {"used_memory": 95, "maxmemory": 0, "total_system_memory": 100},
                     None, None, None),
        T,
    )  # fmt: skip
    memory = next(m for m in metrics if m.name == "memory")
    assert memory.verdict is Verdict.CRITICAL and "no maxmemory" in memory.detail


def test_evictions_over_a_thousand_an_hour_alert() -> None:
    assert observe(evictions_per_hour=999.0)["evictions"] is Verdict.OK
    assert observe(evictions_per_hour=1500.0)["evictions"] is Verdict.ALERT


@pytest.mark.parametrize(
    ("p95", "verdict"), [(4.0, Verdict.OK), (7.0, Verdict.WARN), (12.0, Verdict.ALERT)]
)
def test_latency_verdicts_follow_the_audit(p95: float, verdict: Verdict) -> None:
    assert observe(p95_ms=p95)["latency_p95"] is verdict


@pytest.mark.parametrize(
    ("in_use", "verdict"), [(20, Verdict.OK), (30, Verdict.WARN), (45, Verdict.ALERT)]
)
def test_pool_connection_verdicts_follow_the_audit(in_use: int, verdict: Verdict) -> None:
    assert observe(pool_in_use=in_use, pool_cap=50)["pool_connections"] is verdict


def test_the_overall_verdict_is_the_worst_known_one() -> None:
    metrics = evaluate(Observations(3, 5, 12.0, {"used_memory": 1, "maxmemory": 100},
                                    0.0, 1, 50), T)  # fmt: skip
    assert overall(metrics) is Verdict.ALERT
