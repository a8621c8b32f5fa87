"""The wire contract of cachebus: the key registry, invalidation events and the error tree.

Depends on pydantic only; every other layer builds on it.
"""

from cachebus.contracts.codec import (
    FIELD,
    DecodedEntry,
    decode_entries,
    decode_fields,
    encode_event,
    encode_payload,
)
from cachebus.contracts.errors import (
    BackendError,
    BackendUnavailable,
    CachebusError,
    CircuitOpenError,
    CodecError,
    ConfigError,
    ConsumerError,
    ContractError,
    EventDecodeError,
    GroupMissingError,
    OutboxError,
    PublishError,
)
from cachebus.contracts.events import (
    EVENT_ADAPTER,
    SCHEMA_VERSION,
    Event,
    EventKind,
    InvalidationEvent,
    KeysInvalidated,
    NamespaceFlushed,
    PatternInvalidated,
    validate_event,
)
from cachebus.contracts.factory import (
    EventFactory,
    Ref,
    flush_namespace_event,
    keys_invalidated,
    pattern_invalidated,
)
from cachebus.contracts.ids import new_event_id
from cachebus.contracts.keys import (
    DEFAULT_REGISTRY,
    DEFAULT_TTL_SECONDS,
    CacheKeys,
    KeyRef,
    KeySpace,
    Namespace,
    NamespaceRegistry,
    PatternRef,
    StreamKeys,
    TTLClass,
    escape_glob,
)

__all__ = [
    # events
    "EVENT_ADAPTER",
    "SCHEMA_VERSION",
    "Event",
    "EventFactory",
    "EventKind",
    "InvalidationEvent",
    "KeysInvalidated",
    "NamespaceFlushed",
    "PatternInvalidated",
    "Ref",
    "flush_namespace_event",
    "keys_invalidated",
    "new_event_id",
    "pattern_invalidated",
    "validate_event",
    # wire
    "FIELD",
    "DecodedEntry",
    "decode_entries",
    "decode_fields",
    "encode_event",
    "encode_payload",
    # keys
    "DEFAULT_REGISTRY",
    "DEFAULT_TTL_SECONDS",
    "CacheKeys",
    "KeyRef",
    "KeySpace",
    "Namespace",
    "NamespaceRegistry",
    "PatternRef",
    "StreamKeys",
    "TTLClass",
    "escape_glob",
    # errors
    "BackendError",
    "BackendUnavailable",
    "CachebusError",
    "CircuitOpenError",
    "CodecError",
    "ConfigError",
    "ConsumerError",
    "ContractError",
    "EventDecodeError",
    "GroupMissingError",
    "OutboxError",
    "PublishError",
]
