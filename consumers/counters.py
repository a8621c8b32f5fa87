"""Counters that outlive the process: what each member of a group did, kept in Redis.

A hash beside the stream (``StreamKeys.counters(stream, group)``) holds, per member::

    applied:<member>             events applied to the sinks and acked
    duplicates:<member>          of those, events applied more than once (see below)
    claimed:<member>             entries this member claimed from dead members (XAUTOCLAIM)
    dead_lettered:<member>       entries sent to the dead-letter stream
    flushes.<reason>:<member>    flushes of the scope, by reason

``applied``, ``duplicates`` and ``claimed`` travel in the round trip of the batch's XACK (one
pipeline: XACK, then HINCRBY), ``dead_lettered`` in the dead letter's, ``flushes`` in the
flush's bookkeeping: no extra round trip, and a SIGKILLed member's counts are still there.
They count acked outcomes: a batch applied but never acked (the member died first) is counted
when it is applied again, by whoever applies it. An ack whose reply was lost and that is sent
again may count its batch twice, as delivery itself is at least once.

A *duplicate* is an event applied that may have been applied before: its entry had been
delivered before (delivery count > 1: a redelivery after a crash, a claim), or its
``event_id`` was applied within the last ``dedupe_window`` events of this member before its
batch, or earlier in its batch (a producer retry that appended the same event twice).
Duplicates are harmless (invalidations are deletions); they measure what crashes and retries
cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachebus.consumers.plan import Delivered

__all__ = ["COUNTERS", "GroupCounters", "Tally", "counter_field", "parse_counters"]

#: Every counter kept per member (``flushes`` is split by reason: ``flushes.<reason>``).
COUNTERS = ("applied", "duplicates", "claimed", "dead_lettered", "flushes")


def counter_field(counter: str, member: str) -> str:
    return f"{counter}:{member}"


class Tally:
    """Counts of one member since its last ack, and the window of event ids it applied."""

    __slots__ = ("_order", "_seen", "applied", "claimed", "duplicates", "window")

    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        # A set and the order ids entered it: evicting the oldest from an insertion-ordered
        # dict (next(iter(d))) walks the holes its earlier evictions left, per event. A list,
        # not a deque: a batch's evictions are one slice (a deque pops them one by one).
        self._seen: set[str] = set()
        self._order: list[str] = []
        self.applied = self.duplicates = self.claimed = 0

    def add_applied(self, delivered: Sequence[Delivered], *, redelivered: bool = True) -> None:
        """Count ``delivered`` as applied. ``redelivered=False``: every one was delivered for
        the first time (a read of new entries), so only the window finds duplicates, and a
        whole batch is counted with set operations instead of a step per event."""
        if not redelivered:
            self._add_fresh([d.event.event_id for d in delivered])
            return
        seen = self._seen
        order = self._order
        window = self.window
        duplicates = 0
        for d in delivered:
            event_id = d.event.event_id
            if event_id in seen:
                duplicates += 1
                continue
            if d.deliveries > 1:
                duplicates += 1
            seen.add(event_id)
            order.append(event_id)
        excess = len(order) - window
        if excess > 0:
            seen.difference_update(order[:excess])
            del order[:excess]
        self.applied += len(delivered)
        self.duplicates += duplicates

    def _add_fresh(self, ids: list[str]) -> None:
        seen = self._seen
        order = self._order
        unique = list(dict.fromkeys(ids))  # an id twice in the batch: a duplicate the 2nd time
        new = [i for i in unique if i not in seen] if seen else unique
        seen.update(new)
        order.extend(new)
        excess = len(order) - self.window
        if excess > 0:
            seen.difference_update(order[:excess])
            del order[:excess]
        self.applied += len(ids)
        self.duplicates += len(ids) - len(new)

    def take(self, member: str) -> list[tuple[str, int]]:
        """The HINCRBY pairs of what was counted since the last take, and a fresh start."""
        pairs = [
            (counter_field(name, member), value)
            for name, value in (
                ("applied", self.applied),
                ("duplicates", self.duplicates),
                ("claimed", self.claimed),
            )
            if value
        ]
        self.applied = self.duplicates = self.claimed = 0
        return pairs


@dataclass(frozen=True, slots=True)
class GroupCounters:
    """A group's counters as kept in Redis: per member, and summed over members."""

    members: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for counts in self.members.values():
            for name, value in counts.items():
                out[name] = out.get(name, 0) + value
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals, "members": {m: dict(c) for m, c in self.members.items()}}


def parse_counters(raw: Mapping[Any, Any] | None) -> GroupCounters:
    """The counters hash (HGETALL reply) read back; fields of another shape are skipped."""
    members: dict[str, dict[str, int]] = {}
    for key, value in (raw or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        counter, sep, member = name.rpartition(":")
        if not sep or counter.split(".", 1)[0] not in COUNTERS:
            continue
        try:
            members.setdefault(member, {})[counter] = int(value)
        except ValueError:
            continue
    return GroupCounters({m: dict(sorted(c.items())) for m, c in sorted(members.items())})
