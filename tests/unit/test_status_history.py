"""The status page's history: per-bucket counts from successive polls, latencies, flushes seen by
both feeds counted once, and the page it renders (escaped, self-refreshing, no script)."""

from __future__ import annotations

from cachebus.ops.status import GroupStatus, StreamStatus
from cachebus.ops.status_history import FlushMark, StatusHistory
from cachebus.ops.status_html import line_chart, render_page


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def _stream(added: int, applied: int, *, flush_age_s: float | None = None) -> StreamStatus:
    group = GroupStatus(
        name="web", consumers=1, lag=0, pending=0, oldest_pending_id=None,
        oldest_pending_age_s=None, last_delivered_id="0-0", entries_read=added, dlq_depth=0,
        last_flush_reason=None if flush_age_s is None else "trimmed",
        last_flush_age_s=flush_age_s, flushes={}, synced=True, idle_s=0.1, retired=False,
        holds_retention=False, counters={"totals": {"applied": applied}},
    )  # fmt: skip
    return StreamStatus("inval", "cb:stream:inval", True, entries_added=added, groups=(group,))


def test_polls_count_what_happened_between_them_per_bucket() -> None:
    clock = Clock(1_000.0)
    history = StatusHistory(window_s=60, bucket_s=10, clock=clock)
    history.observe_status([_stream(100, 90)])  # the baseline: history before the page
    clock.at += 4
    history.observe_status([_stream(130, 120)])
    clock.at += 10
    history.observe_status([_stream(150, 150)])
    buckets = history.buckets()
    assert len(buckets) == 6  # the whole window, empty buckets included
    assert [(b.published, b.applied) for b in buckets if b.published] == [(30, 30), (20, 30)]


def test_a_stream_that_appears_is_counted_from_zero() -> None:
    clock = Clock(2_000.0)
    history = StatusHistory(window_s=60, bucket_s=10, clock=clock)
    history.observe_status([StreamStatus("inval", "cb:stream:inval", False)])
    clock.at += 1
    history.observe_status([_stream(5, 5)])
    assert sum(b.published for b in history.buckets()) == 5


def test_old_buckets_leave_the_window_and_latency_quantiles() -> None:
    clock = Clock(3_000.0)
    history = StatusHistory(window_s=30, bucket_s=10, clock=clock)
    history.applied_latencies([5.0, 1.0, 9.0])
    first = history.buckets()[-1]
    assert (first.latency(0.5), first.latency(1.0)) == (5.0, 9.0)
    clock.at += 40
    assert all(b.latency(1.0) is None for b in history.buckets())


def test_a_flush_seen_by_the_consumer_and_the_poll_is_listed_once() -> None:
    clock = Clock(4_000.0)
    history = StatusHistory(clock=clock)
    history.flushed(FlushMark(4_000_000, "web", "trimmed", "consumer", ("prices",), "3 trimmed"))
    clock.at += 0.5
    history.observe_status([_stream(1, 1, flush_age_s=0.4)])  # the meta's record of it
    clock.at += 5
    history.observe_status([_stream(1, 1, flush_age_s=0.1)])  # a second flush
    marks = history.flushes()
    assert [(m.reason, m.detail) for m in marks] == [("trimmed", ""), ("trimmed", "3 trimmed")]


def test_the_page_escapes_what_comes_from_redis_and_refreshes_itself() -> None:
    history = StatusHistory(clock=Clock(5_000.0))
    history.flushed(FlushMark(5_000_000, "<script>x</script>", "manual", "published"))
    html = render_page([_stream(1, 1)], history, {}, title="t", refresh_s=7)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<meta http-equiv="refresh" content="7">' in html
    assert "no dead letters" in html


def test_a_chart_draws_gaps_and_its_peak() -> None:
    svg = line_chart("t", [("a", [1.0, None, 3.0, 4.0])], unit="x", span="-1 min")
    assert 'data-peak="4"' in svg
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # [1] alone, [3, 4] a line


def test_throughput_is_counted_over_the_time_polled_so_now_is_no_dip() -> None:
    # Given a steady 50 events/s polled every 2 s, 10 s buckets, the page begun mid-bucket
    clock = Clock(1_004.0)
    history = StatusHistory(window_s=60, bucket_s=10, clock=clock)
    published = 0
    history.observe_status([_stream(published, published)])  # the baseline
    for _ in range(4):  # polls at 1006, 1008 (first bucket), 1010, 1012 (the newest)
        clock.at += 2
        published += 100
        history.observe_status([_stream(published, published)])
    clock.at += 1  # now is 1013: the newest bucket is 3 s old, polled over 4 s of events
    buckets = history.buckets()
    rates = history.throughput(buckets)
    # Then every bucket with data reads 50/s: the page's first bucket (4 s of events, not 10)
    # and the newest, still filling (whole-bucket division read 40 and 20: dips at both ends)
    measured = [(b.start_ms, r) for b, r in zip(buckets, rates, strict=True) if b.covered_ms]
    assert measured == [(1_000_000, (50.0, 50.0)), (1_010_000, (50.0, 50.0))]
    assert set(rates[:-2]) == {(0.0, 0.0)}  # before the page: nothing counted
    assert 'data-peak="50"' in render_page([_stream(1, 1)], history, {}, title="t")
    # And a bucket just begun, not polled yet, is a gap rather than a drop to zero
    clock.at = 1_020.5
    assert history.throughput(history.buckets())[-2:] == [(50.0, 50.0), (None, None)]
