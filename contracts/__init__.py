"""The wire contract of cachebus: the key registry, invalidation events and the error tree.

Depends on pydantic only; every other layer builds on it.
"""

from contracts.errors import (
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
    PublishError,
)
from contracts.keys import (
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
    "PublishError",
]
