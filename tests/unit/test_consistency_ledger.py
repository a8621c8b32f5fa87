"""The checker's books: when an invalidation is done, what is lost, which reads were stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachebus.consistency import CheckConfig
from cachebus.consistency.ledger import ApplyLog, Ledger, share_within
from cachebus.contracts.errors import ConfigError


def log_with(tmp_path: Path, lines: list[str]) -> ApplyLog:
    path = tmp_path / "applied.log"
    path.write_text("".join(f"{line}\n" for line in lines))
    log = ApplyLog(path)
    log.refresh()
    return log


def test_an_event_is_done_at_its_first_application_or_a_later_flush(tmp_path: Path) -> None:
    ledger = Ledger("positions")
    for event_id, created in (("e1", 1000), ("e2", 1000), ("e3", 5000), ("e4", 9000)):
        ledger.published(event_id, created)
    log = log_with(
        tmp_path,
        [
            "R 900",
            "A 1010 e1",
            "A 1500 e1",  # a duplicate: the first application counts
            "F 2000 trimmed positions",  # covers e2 (created before it), not e3
            "F 2500 trimmed prices",  # another namespace: covers nothing here
            "A 5300 e3",
        ],
    )
    lags = ledger.lags(log)
    assert lags.done == {"e1": 10, "e2": 1000, "e3": 300}
    assert lags.covered_by_flush == 1 and lags.lost == ("e4",)
    assert ledger.pending(log) == 1
    assert share_within(lags.done.values(), 999) == pytest.approx(2 / 3)


def test_a_line_still_being_written_is_read_next_time(tmp_path: Path) -> None:
    path = tmp_path / "applied.log"
    path.write_text("A 10 e1\nA 20 e")
    log = ApplyLog(path)
    log.refresh()
    assert log.applied == {"e1": 10}
    with open(path, "a") as more:
        more.write("2\n")
    log.refresh()
    assert log.applied == {"e1": 10, "e2": 20}


def test_reads_older_than_the_window_are_counted_stale() -> None:
    ledger = Ledger("positions")
    ledger.committed("k", 0, 0)
    ledger.committed("k", 1, 10_000)
    ledger.read("k", 0, 10_500)  # 0.5 s after the change: within the window
    ledger.read("k", 0, 11_500)  # 1.5 s after: stale
    ledger.read("k", 1, 11_500)
    assert ledger.stale_reads_over(1000) == 1


def test_check_configs_refuse_what_cannot_run() -> None:
    with pytest.raises(ConfigError, match="unknown faults"):
        CheckConfig(faults=("meteor",))
    with pytest.raises(ConfigError, match="scratch"):
        CheckConfig(redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="keys >= groups"):
        CheckConfig(keys=3, groups=5)
