"""What rolling a new registry file out changes, and what each change asks of the operator.

:func:`diff_registries` compares two registries namespace by namespace. Each
:class:`Change` says what changed and when it needs action:

* a **key template** change makes the old ids unreachable: values cached under them only waste
  memory until their TTL; but while old and new services run side by side, a producer on one
  template invalidates ids that readers on the other never cached, so values may be served
  stale until their TTL: **flush the namespace after the rollout**;
* a **dictionary** change: readers must know the new dictionary before writers use it
  (values written with a dictionary a reader lacks are counted misses, never wrong data):
  **before the rollout**, give readers the new dictionary as a decode-only one
  (``CacheConfig.decode_dictionaries``), or accept the misses;
* a namespace **removed**: what is cached under it stays until its TTL (wasted memory only)
  and consumers that still name it are refused at start: flush it after if memory matters;
* a namespace **added**, a **TTL**, **compression** (each value's header says how it was
  written), **patterns**, owners, readers or description change: no action.

``cachebus registry diff OLD NEW`` prints them and exits 1 when one needs action.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cachebus.contracts.registry import Namespace, Registry

__all__ = ["Action", "Change", "diff_registries"]


class Action(StrEnum):
    NONE = "none"
    BEFORE = "before"  # something must happen before the new file is rolled out
    FLUSH_AFTER = "flush_after"  # flush the namespace once every service runs the new file
    OPTIONAL = "optional"  # nothing is wrong; a flush would only reclaim memory


@dataclass(frozen=True, slots=True)
class Change:
    namespace: str
    what: str  # added, removed, key, ttl_s, compression, dictionary, patterns, owners, ...
    old: str
    new: str
    action: Action
    advice: str

    @property
    def needs_action(self) -> bool:
        return self.action in (Action.BEFORE, Action.FLUSH_AFTER)

    def as_dict(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "what": self.what,
            "old": self.old,
            "new": self.new,
            "action": self.action.value,
            "needs_action": self.needs_action,
            "advice": self.advice,
        }


_FIELDS: tuple[tuple[str, Action, str], ...] = (
    (
        "key",
        Action.FLUSH_AFTER,
        "old ids become unreachable (memory until their TTL), and during the rollout "
        "invalidations on one template miss values cached on the other: flush the namespace "
        "after every service runs the new file",
    ),
    (
        "dictionary",
        Action.BEFORE,
        "readers must know the new dictionary before writers use it: ship it to readers as "
        "a decode-only dictionary first (CacheConfig.decode_dictionaries), or accept misses",
    ),
    ("ttl_s", Action.NONE, "values keep their TTL until rewritten"),
    ("compression", Action.NONE, "each value's header says how it was written"),
    ("patterns", Action.NONE, "producers are checked against their own file"),
    ("owners", Action.NONE, "documentation of who publishes"),
    ("readers", Action.NONE, "the default namespaces of those services change"),
    ("description", Action.NONE, ""),
)


def _value(ns: Namespace, name: str) -> str:
    if name == "key":
        return ns.key.text
    if name == "dictionary":
        if ns.dictionary is None:
            return "-"
        return f"{ns.dictionary} ({(ns.dictionary_sha256 or '?')[:12]})"
    value = getattr(ns, name)
    if isinstance(value, tuple):
        return ",".join(value) or "-"
    return str(value.value if hasattr(value, "value") else value)


def _same_dictionary(a: Namespace, b: Namespace) -> bool:
    """Same bytes (a moved file is the same dictionary), or the same path when unread."""
    if a.dictionary_sha256 is not None and b.dictionary_sha256 is not None:
        return a.dictionary_sha256 == b.dictionary_sha256
    return a.dictionary == b.dictionary


def diff_registries(old: Registry, new: Registry) -> list[Change]:
    """Every change from ``old`` to ``new``, namespace by namespace (sorted)."""
    changes: list[Change] = []
    for name in sorted({*old.names, *new.names}):
        if name not in old:
            changes.append(Change(name, "added", "-", new[name].key.text, Action.NONE, "no action"))
            continue
        if name not in new:
            advice = (
                "cached values stay until their TTL (flush to reclaim memory); consumers "
                "still naming it are refused at start"
            )
            changes.append(
                Change(name, "removed", old[name].key.text, "-", Action.OPTIONAL, advice)
            )
            continue
        before, after = old[name], new[name]
        for field, action, advice in _FIELDS:
            was, now = _value(before, field), _value(after, field)
            if field == "dictionary":
                if _same_dictionary(before, after):
                    continue
            elif was == now:
                continue
            changes.append(Change(name, field, was, now, action, advice or "no action"))
    return changes
