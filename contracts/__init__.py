"""The wire contract of cachebus: the key registry, invalidation events and the error tree.

Depends on pydantic only; every other layer builds on it.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.contracts.codec import decode_entries as decode_entries
    from cachebus.contracts.codec import decode_fields as decode_fields
    from cachebus.contracts.events import Event as Event
    from cachebus.contracts.events import KeysInvalidated as KeysInvalidated
    from cachebus.contracts.events import NamespaceFlushed as NamespaceFlushed
    from cachebus.contracts.events import PatternInvalidated as PatternInvalidated
    from cachebus.contracts.factory import EventFactory as EventFactory
    from cachebus.contracts.keys import CacheKeys as CacheKeys
    from cachebus.contracts.keys import KeySpace as KeySpace
    from cachebus.contracts.keys import Namespace as Namespace
    from cachebus.contracts.keys import NamespaceRegistry as NamespaceRegistry
    from cachebus.contracts.keys import StreamKeys as StreamKeys
    from cachebus.contracts.keys import TTLClass as TTLClass

__all__ = [
    # keys
    "CacheKeys",
    "KeySpace",
    "Namespace",
    "NamespaceRegistry",
    "StreamKeys",
    "TTLClass",
    # events
    "Event",
    "EventFactory",
    "KeysInvalidated",
    "NamespaceFlushed",
    "PatternInvalidated",
    # wire
    "decode_entries",
    "decode_fields",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.contracts.codec": (
                "decode_entries",
                "decode_fields",
            ),
            "cachebus.contracts.events": (
                "Event",
                "KeysInvalidated",
                "NamespaceFlushed",
                "PatternInvalidated",
            ),
            "cachebus.contracts.factory": ("EventFactory",),
            "cachebus.contracts.keys": (
                "CacheKeys",
                "KeySpace",
                "Namespace",
                "NamespaceRegistry",
                "StreamKeys",
                "TTLClass",
            ),
        },
    )
