"""Gap verdicts from what Redis 7.0 reports (shapes measured on 7.0.15)."""

from __future__ import annotations

from cachebus.consumers.entries import (
    GroupState,
    StreamState,
    parse_claim,
    parse_raw_read,
    stream_id,
)
from cachebus.consumers.gaps import check_gap
from cachebus.consumers.group import GroupMeta

META = GroupMeta(epoch="e", synced="e", deficit=0, fallback_mark=None)


def state(*, added: int, length: int, read: int | None, delivered: str = "5-0",
          first: str = "1-0", max_deleted: str = "0-0") -> StreamState:  # fmt: skip
    group = GroupState("g", 1, 0, delivered, read, None)
    return StreamState(length, added, "9-0", max_deleted, first, {"g": group})


def test_a_group_that_read_everything_removed_has_no_gap() -> None:
    assert not check_gap(state(added=5, length=1, read=5), "g", META).gap


def test_entries_removed_before_the_group_read_them_are_a_gap() -> None:
    verdict = check_gap(state(added=5, length=1, read=2), "g", META)
    assert verdict.gap
    assert verdict.deficit == 2


def test_a_gap_already_flushed_is_not_flushed_again() -> None:
    # After reading past the trimmed entries Redis still counts 3 read of 5 (measured).
    meta = GroupMeta("e", "e", deficit=2, fallback_mark=None)
    assert not check_gap(state(added=8, length=4, read=3), "g", meta).gap
    # ...until more unread entries are removed.
    assert check_gap(state(added=8, length=1, read=3), "g", meta).gap


def test_an_unread_deleted_entry_is_a_gap_once() -> None:
    verdict = check_gap(state(added=5, length=5, read=5, max_deleted="7-0"), "g", META)
    assert verdict.gap
    meta = GroupMeta("e", "e", 0, verdict.fallback_mark)
    assert not check_gap(state(added=5, length=5, read=5, max_deleted="7-0"), "g", meta).gap


def test_without_entries_read_a_position_behind_the_oldest_entry_flushes_once() -> None:
    verdict = check_gap(
        state(added=9, length=3, read=None, delivered="2-0", first="6-0"), "g", META
    )
    assert verdict.gap
    meta = GroupMeta("e", "e", 0, verdict.fallback_mark)
    assert not check_gap(
        state(added=9, length=3, read=None, delivered="2-0", first="6-0"), "g", meta
    ).gap
    assert not check_gap(
        state(added=9, length=3, read=None, delivered="6-0", first="6-0"), "g", META
    ).gap


def test_a_position_behind_the_oldest_entry_is_no_gap_when_nothing_was_ever_removed() -> None:
    assert not check_gap(
        state(added=3, length=3, read=None, delivered="0-0", first="6-0"), "g", META
    ).gap


def test_unknown_group_or_empty_stream_has_no_gap() -> None:
    assert not check_gap(state(added=5, length=1, read=2), "other", META).gap
    assert not check_gap(state(added=0, length=0, read=0), "g", META).gap


def test_replies_parse_in_resp2_and_resp3_shapes() -> None:
    # Raw replies (no redis-py callback), as measured on 7.0.15 with RESP2 and RESP3.
    resp2 = [[b"s", [[b"1-0", [b"a", b"1"]], [b"2-0", None]]]]
    resp3 = {b"s": [[b"1-0", [b"a", b"1"]], [b"2-0", None]]}
    for reply in (resp2, resp3):
        entries = parse_raw_read(reply, "s")
        assert [e.id for e in entries] == ["1-0", "2-0"]
        assert entries[1].trimmed and not entries[0].trimmed
        assert entries[0].fields == {b"a": b"1"}
    many = parse_raw_read([[b"s", [[b"3-0", [b"a", b"1", b"b", b"2"]]]]], "s")
    assert many[0].fields == {b"a": b"1", b"b": b"2"}
    assert parse_raw_read(None, "s") == []
    claim = parse_claim([b"0-0", [(b"3-0", {b"a": b"1"})], [b"1-0"]])
    assert claim.deleted_ids == ["1-0"] and claim.entries[0].id == "3-0"
    assert stream_id("10-2") > stream_id("9-99")


def test_a_never_read_group_whose_stream_was_emptied_flushes_once() -> None:
    # Measured on 7.0.15: a group created at '$' on an empty stream has no entries-read until
    # its first read; XADD ... MAXLEN 0 then leaves length 0 with 9-0 as the last id.
    emptied = state(added=4, length=0, read=None, delivered="0-0", first="0-0")
    verdict = check_gap(emptied, "g", META)
    assert verdict.gap
    assert not check_gap(emptied, "g", GroupMeta("e", "e", 0, verdict.fallback_mark)).gap
    caught_up = state(added=4, length=0, read=None, delivered="9-0", first="0-0")
    assert not check_gap(caught_up, "g", META).gap
