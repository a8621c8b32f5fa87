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
    from cachebus.contracts.keys import KeyRef as KeyRef
    from cachebus.contracts.keys import KeySpace as KeySpace
    from cachebus.contracts.keys import PatternRef as PatternRef
    from cachebus.contracts.keys import StreamKeys as StreamKeys
    from cachebus.contracts.registry import Compression as Compression
    from cachebus.contracts.registry import Namespace as Namespace
    from cachebus.contracts.registry import Registry as Registry
    from cachebus.contracts.templates import KeyTemplate as KeyTemplate

__all__ = [
    # the registry
    "Compression",
    "KeyTemplate",
    "Namespace",
    "Registry",
    # keys
    "KeyRef",
    "KeySpace",
    "PatternRef",
    "StreamKeys",
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
            "cachebus.contracts.keys": ("KeyRef", "KeySpace", "PatternRef", "StreamKeys"),
            "cachebus.contracts.registry": ("Compression", "Namespace", "Registry"),
            "cachebus.contracts.templates": ("KeyTemplate",),
        },
    )
