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
"""

from __future__ import annotations

from dataclasses import dataclass

from cachebus.consumers.entries import StreamState, stream_id
from cachebus.consumers.group import GroupMeta

__all__ = ["GapVerdict", "check_gap"]


@dataclass(frozen=True, slots=True)
class GapVerdict:
    gap: bool
    #: What to record as the new baseline once the flush is done.
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
