"""Gap detection: deciding, from what Redis reports, that invalidations may have been lost.

Redis 7.0 skips trimmed entries without an error. What it does report (measured on 7.0.15):
``entries-added`` and ``length`` of the stream give the number of entries ever removed, and a
group's ``entries-read`` counts the entries it actually read; when a group reads past entries
that were trimmed before it got to them, its ``entries-read`` stays short of the truth for
good. So the *deficit* ``removed - entries_read`` is at most the number of entries this group
has ever skipped, and grows beyond that exactly when entries it had not read were removed.

A flush covers everything published before it, so after flushing for a gap the current
deficit becomes the group's baseline (kept in the group meta, shared by all members): a loss
is flushed once, and only a further loss flushes again.

Two views are checked (the runtime reads the stream's state just before *and* just after a
checking read, in the same round trip; see :mod:`cachebus.consumers.runtime` for when):

* before the read (:func:`check_gap`): entries removed ahead of the group's position, an entry
  deleted ahead of it, or a position behind the oldest entry when Redis cannot count;
* after it (:func:`check_after`): evidence that survives the group reading past a loss, so a
  loss that happened between two checks is still found at the next one:

  - ``entries-read`` counts only entries actually delivered, so once the group has read every
    entry (its last-delivered id is the stream's last id) ``entries-added - entries-read`` is
    *exactly* the number of entries it ever skipped. ``removed - entries-read`` (the view
    before a read) undercounts a skip by the entries read since that are still in the stream:
    a trim that leaves at least as many entries as it removed, read past before the next
    check, hides behind it; the caught-up count does not.
  - ``max-deleted-entry-id`` never decreases: an XDEL of an id beyond the group's position at
    this member's previous check may have removed an entry before the group read it (XDEL also
    makes Redis re-estimate ``entries-read``, which erases the count above). Nothing in cachebus
    XDELs the invalidation stream, so this conservative rule costs a flush only when someone
    does, once per deleted id.

When the caught-up count is *below* the baseline (Redis re-estimated ``entries-read``), the
baseline is lowered to it, so that a later loss is not hidden under the old one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachebus.consumers.entries import GroupState, StreamState, stream_id
from cachebus.consumers.group import GroupMeta

__all__ = ["NO_GAP", "GapVerdict", "caught_up", "check_after", "check_gap", "combine"]


@dataclass(frozen=True, slots=True)
class GapVerdict:
    gap: bool
    #: What to record as the new baseline once the flush is done (without a gap: a lower
    #: baseline to record, no flush).
    deficit: int | None = None
    fallback_mark: str | None = None
    detail: str = ""


NO_GAP = GapVerdict(False)


def check_gap(state: StreamState, group: str, meta: GroupMeta) -> GapVerdict:
    info = state.groups.get(group)
    if info is None or state.entries_added == 0:
        return NO_GAP
    # An entry deleted (XDEL) after our position is a tombstone we will never read.
    if stream_id(state.max_deleted_entry_id) > stream_id(info.last_delivered_id):
        mark = f"deleted:{state.max_deleted_entry_id}"
        if meta.fallback_mark != mark:
            return GapVerdict(
                True,
                fallback_mark=mark,
                detail=f"entry {state.max_deleted_entry_id} deleted unread",
            )
    if info.entries_read is not None:
        deficit = state.removed - info.entries_read
        if deficit > meta.deficit:
            return GapVerdict(
                True,
                deficit=deficit,
                detail=f"{deficit - meta.deficit} entries removed before group {group!r} read them",
            )
        return NO_GAP
    # Redis cannot count for this group (created or moved at an arbitrary id, or created at
    # '$' on an empty stream and not read since): when our position is behind the oldest
    # entry, entries in between may be gone; when the stream is empty but has entries newer
    # than our position, they are all gone unread (a producer's XADD MAXLEN 0 does this).
    # Flush once per distinct oldest (or last) entry, never in a loop.
    if state.removed > 0:
        position = stream_id(info.last_delivered_id)
        fallback: str | None = None
        if state.length and position < stream_id(state.first_entry_id):
            fallback = f"first:{state.first_entry_id}"
        elif not state.length and position < stream_id(state.last_generated_id):
            fallback = f"emptied:{state.last_generated_id}"
        if fallback is not None and meta.fallback_mark != fallback:
            return GapVerdict(
                True, fallback_mark=fallback, detail="position behind the oldest entry"
            )
    return NO_GAP


def caught_up(state: StreamState, group: str) -> bool:
    """The group has been delivered every entry the stream ever had, and Redis counts for it:
    the state after such a read is exact (see :func:`check_after`)."""
    info = state.groups.get(group)
    return info is not None and info.entries_read is not None and _at_tail(state, info)


def _at_tail(state: StreamState, info: GroupState) -> bool:
    return stream_id(info.last_delivered_id) == stream_id(state.last_generated_id)


def check_after(state: StreamState, group: str, meta: GroupMeta, since: str | None) -> GapVerdict:
    """The state just after a read; ``since``: the group's position at this member's previous
    check (None: no previous check, the view before the read covers it)."""
    info = state.groups.get(group)
    if info is None or state.entries_added == 0:
        return NO_GAP
    deleted = state.max_deleted_entry_id
    mark: str | None = f"deleted:{deleted}"
    if since is None or stream_id(deleted) <= stream_id(since) or meta.fallback_mark == mark:
        mark = None
    skipped: int | None = None
    exact = False
    if info.entries_read is not None:
        # A deleted entry is counted here too, when Redis kept counting: one flush for both.
        exact = _at_tail(state, info)
        skipped = (state.entries_added if exact else state.removed) - info.entries_read
    if skipped is not None and skipped > meta.deficit:
        detail = f"{skipped - meta.deficit} entries removed before group {group!r} read them"
        return GapVerdict(True, deficit=skipped, fallback_mark=mark, detail=detail)
    if mark is not None:
        return GapVerdict(True, fallback_mark=mark, detail=f"entry {deleted} deleted unread")
    if exact and skipped is not None and skipped < meta.deficit:
        return GapVerdict(False, deficit=max(skipped, 0))
    return NO_GAP


def combine(before: GapVerdict, after: GapVerdict) -> GapVerdict:
    """One flush for both views: the larger baseline, either mark."""
    if not (before.gap or after.gap):
        return after if after.deficit is not None else NO_GAP
    deficits = [v.deficit for v in (before, after) if v.gap and v.deficit is not None]
    return GapVerdict(
        True,
        deficit=max(deficits) if deficits else None,
        fallback_mark=after.fallback_mark or before.fallback_mark,
        detail="; ".join(v.detail for v in (before, after) if v.gap),
    )
