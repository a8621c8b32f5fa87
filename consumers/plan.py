"""Coalescing: a batch of events becomes one plan of deletions, applied in few round trips.

Every invalidation is a deletion, and deletions commute: applying a batch's events in any
order, or merged, leaves the cache in the same state as applying them one by one. So within a
batch duplicate keys are deleted once, a pattern subsumes the keys it matches, and a namespace
flush subsumes every key and pattern of that namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple

from cachebus.contracts.events import InvalidationEvent
from cachebus.contracts.keys import KeyRef, glob_match

__all__ = ["Delivered", "Plan", "coalesce", "new_delivered"]


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


class Delivered(NamedTuple):
    """A decoded event and where it came from (a named tuple: one per event, hot path)."""

    entry_id: str
    event: InvalidationEvent
    headers: Mapping[str, str] = _EMPTY
    deliveries: int = 1
    #: The entry's raw fields, kept so a dead letter carries exactly what was received.
    fields: Mapping[bytes | str, bytes | str] = _EMPTY


#: ``Delivered`` from a tuple of all five fields, without the named tuple's Python-level
#: constructor (a frame per event on the consumer's hot path).
new_delivered = partial(tuple.__new__, Delivered)


@dataclass(slots=True)
class Plan:
    keys: dict[str, set[str]] = field(default_factory=dict)
    patterns: dict[str, set[str]] = field(default_factory=dict)
    flushes: set[str] = field(default_factory=set)
    #: The events themselves, in stream order, for sinks that want them one by one.
    delivered: list[Delivered] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.keys or self.patterns or self.flushes)

    def key_refs(self) -> list[KeyRef]:
        return [KeyRef(ns, ident) for ns, ids in self.keys.items() for ident in ids]

    @property
    def key_count(self) -> int:
        return sum(len(ids) for ids in self.keys.values())


def coalesce(delivered: Iterable[Delivered]) -> Plan:
    plan = Plan(delivered=list(delivered))
    keys = plan.keys
    for item in plan.delivered:
        event = item.event
        ns = event.namespace
        if event.kind == "keys":
            ids = keys.get(ns)
            if ids is None:  # not setdefault(ns, set()): that builds a set per event
                ids = keys[ns] = set()
            ids.update(event.keys)
        elif event.kind == "flush":
            plan.flushes.add(ns)
        else:
            plan.patterns.setdefault(ns, set()).add(event.pattern)
    for ns in plan.flushes:
        plan.keys.pop(ns, None)
        plan.patterns.pop(ns, None)
    for ns, patterns in plan.patterns.items():
        ids = plan.keys.get(ns)
        if ids:
            ids.difference_update({i for i in ids if any(glob_match(p, i) for p in patterns)})
            if not ids:
                del plan.keys[ns]
    return plan
