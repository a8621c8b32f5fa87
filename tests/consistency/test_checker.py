"""The consistency checker: bounded runs under faults leave nothing stale after quiescence."""

from __future__ import annotations

import json
import time

import pytest
import redis
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.consistency import FAULTS, CheckConfig, run_check

pytestmark = [pytest.mark.slow, pytest.mark.fault]


async def test_a_short_check_under_every_fault_leaves_nothing_stale_after_quiescence() -> None:
    started = time.monotonic()
    report = await run_check(
        CheckConfig(duration_s=8.0, keys=200, groups=10, cut_s=1.0, consumer="subprocess")
    )
    assert time.monotonic() - started < 90  # 8 s of load, bounded quiescence, slack for load
    assert [fault.name for fault in report.faults] == list(FAULTS)
    assert report.stale_after_quiescence == 0
    assert report.lost == 0 and report.unpublished == 0
    assert report.passed
    # It measured something real: writes became events, fills raced invalidations, reads ran.
    assert report.events >= report.writes > 500 and report.reads > 500
    assert report.applied + report.covered_by_flush == report.events
    assert report.keys_checked == 200 and report.cache["refused_fills"] > 0
    assert report.within_1s is not None and report.within_1s_steady is not None


async def test_the_outbox_source_keeps_the_cache_consistent_across_a_redis_restart() -> None:
    report = await run_check(
        CheckConfig(
            duration_s=4.0,
            keys=100,
            groups=5,
            source="sqlite",
            consumer="inprocess",
            faults=("redis_restart",),
        )
    )
    assert report.stale_after_quiescence == 0 and report.lost == 0
    assert report.events >= report.writes > 200
    assert [fault.name for fault in report.faults] == ["redis_restart"]


def test_cachebus_check_prints_the_report_with_a_json_last_line() -> None:
    result = CliRunner().invoke(
        app, ["check", "--duration", "2", "--keys", "60", "--faults", "none", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["passed"] is True and summary["stale_after_quiescence"] == 0
    assert summary["within_1s_steady"] is not None and summary["events"] > 0


def test_a_wrong_option_exits_2_and_says_what_to_use() -> None:
    result = CliRunner().invoke(app, ["check", "--faults", "meteor"])
    assert result.exit_code == 2
    assert "consumer_kill" in result.output


async def test_a_check_on_an_external_redis_leaves_no_key_behind(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    report = await run_check(
        CheckConfig(
            duration_s=2.0,
            keys=50,
            groups=5,
            consumer="inprocess",
            faults=("consumer_kill", "proxy_cut"),
            cut_s=0.5,
            redis_url=redis_url,
            prefix=prefix,
        )
    )
    assert report.passed and report.events > 0
    assert list(redis_client.scan_iter(match=f"{prefix}*", count=1000)) == []
