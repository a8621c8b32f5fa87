"""Redis key names: the only place where key strings and patterns are built.

The audit that started cachebus found the same data cached under drifting names
(``api:positions:{id}`` vs ``positions:{id}:*``). Here every kind of cached data is a
*namespace* of the system's registry (:mod:`cachebus.contracts.registry`), every key is
``(namespace, id)``, and:

* services publish invalidations as namespace-relative ids or globs (:class:`KeyRef`,
  :class:`PatternRef`), never as full Redis keys;
* each service's cache lives in its own *scope*, and :class:`KeySpace` turns a reference into
  that scope's Redis key: ``{prefix}:{scope}:{namespace}:{id}``;
* :class:`StreamKeys` names the stream-side keys (stream, epoch, group meta, dead letters,
  counters, registry records).

The syntax rules (names, ids, globs) live in :mod:`cachebus.contracts.names`; they are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cachebus.contracts.errors import ContractError
from cachebus.contracts.names import (
    MAX_ID_LENGTH,
    MAX_PARTITIONS,
    MAX_PATTERN_LENGTH,
    KeyRef,
    PatternRef,
    escape_glob,
    glob_match,
    validate_id,
    validate_name,
    validate_pattern,
)
from cachebus.contracts.partitions import hashed_part, home_partition, partition_of, partition_tag
from cachebus.contracts.registry import Namespace, Registry

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_PARTITIONS",
    "MAX_PATTERN_LENGTH",
    "KeyRef",
    "KeySpace",
    "PatternRef",
    "StreamKeys",
    "escape_glob",
    "glob_match",
    "scope_match",
    "validate_id",
    "validate_name",
    "validate_pattern",
]


def scope_match(prefix: str, scope: str) -> str:
    """A SCAN MATCH pattern (and ACL key pattern) for every key of one cache scope."""
    prefix, scope = validate_name(prefix, "prefix"), validate_name(scope, "scope")
    return f"{escape_glob(prefix)}:{escape_glob(scope)}:*"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Maps namespace-relative references to one scope's Redis keys.

    ``scope`` is the service that owns the cache (its ACL key pattern is
    ``{prefix}:{scope}:*``). Reserved keys of the scope (generations, leases, sync markers)
    use ``__``-prefixed segments (``__gen__``, ``__lease__``, ``__leases__``, ``__sync__``),
    which no namespace may use, so a namespace pattern never matches them.
    """

    prefix: str = "cb"
    scope: str = "shared"
    #: The system's registry (required: the library knows no namespace of its own).
    registry: Registry = field(compare=False, kw_only=True)

    def __post_init__(self) -> None:
        validate_name(self.prefix, "prefix")
        validate_name(self.scope, "scope")

    @property
    def root(self) -> str:
        """Every key of this scope starts with this string."""
        return f"{self.prefix}:{self.scope}:"

    def scope_match(self) -> str:
        """A SCAN MATCH pattern for every key of the scope, reserved keys included."""
        return scope_match(self.prefix, self.scope)

    def namespace(self, name: str) -> Namespace:
        return self.registry.get(name)

    def key(self, namespace: str, id: str | int) -> str:
        self.registry.get(namespace)
        return f"{self.prefix}:{self.scope}:{namespace}:{validate_id(id)}"

    def key_pairs(self, namespace: str, ids: Iterable[str | int]) -> tuple[list[str], list[str]]:
        """The data keys and the lease keys of many ids of one namespace, each id validated.

        For a consumer batch: the namespace is checked once and a well-formed id costs a few
        string operations instead of a :func:`validate_id` call.
        """
        self.registry.get(namespace)
        base = f"{self.prefix}:{self.scope}:{namespace}:"
        lease = f"{self.prefix}:{self.scope}:__lease__:"
        data: list[str] = []
        leases: list[str] = []
        for ident in ids:
            if (
                type(ident) is not str
                or not ident
                or len(ident) > MAX_ID_LENGTH
                or "\x00" in ident
                or "\r" in ident
                or "\n" in ident
            ):
                ident = validate_id(ident)  # the precise error, or an int made text
            key = base + ident
            data.append(key)
            # The lease_key() rule, inlined for ids without braces (the common case).
            if "{" in ident or "}" in ident:
                leases.append(self.lease_key(namespace, ident))
            else:
                leases.append(f"{lease}{{{key}}}")
        return data, leases

    def ref_key(self, ref: KeyRef) -> str:
        return self.key(ref.namespace, ref.id)

    def namespace_match(self, namespace: str) -> str:
        """A SCAN MATCH pattern for every item of one namespace."""
        self.registry.get(namespace)
        return f"{escape_glob(self.prefix)}:{escape_glob(self.scope)}:{namespace}:*"

    def match(self, namespace: str, pattern: str) -> str:
        """A SCAN MATCH pattern for a namespace-relative glob (validated, never a bare ``*``)."""
        self.registry.get(namespace)
        validate_pattern(pattern)
        return f"{escape_glob(self.prefix)}:{escape_glob(self.scope)}:{namespace}:{pattern}"

    def ref_match(self, ref: PatternRef) -> str:
        return self.match(ref.namespace, ref.pattern)

    def generation_key(self, namespace: str) -> str:
        self.registry.get(namespace)
        return f"{self.prefix}:{self.scope}:__gen__:{namespace}"

    def lease_key(self, namespace: str, id: str | int) -> str:
        """The ``get_or_set`` lease of one item, in the same Redis Cluster slot as its value.

        The fill stores the value with a Lua compare-and-set on the lease, so both keys must
        share a slot: the lease key's hash tag is the part of the value key that Redis hashes
        (the whole key, or the hash tag the id carries). Ids with a stray ``}`` outside a hash
        tag cannot be co-located; they keep an untagged lease (fine on one Redis; see
        :meth:`lease_colocated`).
        """
        value_key = self.key(namespace, id)
        hashed = hashed_part(value_key)
        if hashed == value_key and "}" not in hashed:
            return f"{self.prefix}:{self.scope}:__lease__:{{{value_key}}}"
        # A tag inside the id is the first '{' of both keys, so they share a slot already.
        return f"{self.prefix}:{self.scope}:__lease__:{namespace}:{validate_id(id)}"

    def lease_colocated(self, namespace: str, id: str | int) -> bool:
        """Whether the lease of ``(namespace, id)`` shares its value's hash slot."""
        return hashed_part(self.lease_key(namespace, id)) == hashed_part(self.key(namespace, id))

    def lease_index_key(self, namespace: str) -> str:
        """The namespace's outstanding ``get_or_set`` leases (a sorted set of ids by expiry):
        how a pattern invalidation finds the leases it must void without scanning for them."""
        self.registry.get(namespace)
        return f"{self.prefix}:{self.scope}:__leases__:{namespace}"

    def sync_key(self, stream: str) -> str:
        """Where the scope records which stream epoch its contents are synced to."""
        return f"{self.prefix}:{self.scope}:__sync__:{validate_name(stream, 'stream')}"

    def parse(self, redis_key: str) -> KeyRef:
        """Inverse of :meth:`key` for keys of this scope."""
        root = self.root
        if not redis_key.startswith(root):
            raise ContractError(f"key {redis_key!r} is outside scope {root!r}", rule="key.scope")
        ns, sep, ident = redis_key[len(root) :].partition(":")
        if not sep or ns not in self.registry:
            raise ContractError(
                f"key {redis_key!r} names no registered namespace", rule="key.namespace"
            )
        return KeyRef(ns, ident)


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """Names of the stream-side keys: the invalidation stream, its epoch, its dead letters.

    With ``partitions > 1`` each logical stream is split into that many partitions (see
    :mod:`cachebus.contracts.partitions`): the keys of partition ``i`` carry the hash tag
    ``{<stream>.<i>}`` (salted when needed to land on its own share of the slot space), so
    one partition's stream, epoch, group meta and dead letters live in one Redis Cluster slot.
    Keys that name a partition come from :meth:`for_partition`; with one partition the names
    are the untagged ones cachebus always used.
    """

    prefix: str = "cb"
    #: Partitions per stream (1: one stream key, the historical names).
    partitions: int = 1
    #: The partition these keys name; None for the layout as a whole.
    partition: int | None = None

    def __post_init__(self) -> None:
        validate_name(self.prefix, "prefix")
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ContractError(
                f"partitions must be an integer from 1 to {MAX_PARTITIONS}, "
                f"got {self.partitions!r}",
                rule="stream.partitions",
            )
        if self.partition is not None and not 0 <= self.partition < self.partitions:
            raise ContractError(
                f"partition {self.partition!r} does not exist: there are {self.partitions} "
                f"(0 to {self.partitions - 1})",
                rule="stream.partition",
            )

    def _name(self, name: str) -> str:
        validate_name(name, "stream")
        if self.partitions == 1:
            return name
        if self.partition is None:
            raise ContractError(
                f"stream {name!r} has {self.partitions} partitions: name one with "
                "keys.for_partition(i), or use PartitionedConsumer / a partitioned Producer",
                rule="stream.partition",
            )
        return "{" + partition_tag(name, self.partition, self.partitions) + "}"

    def stream(self, name: str) -> str:
        return f"{self.prefix}:stream:{self._name(name)}"

    def destination(self, name: str) -> str:
        """The stream's name for spans and metrics: its key, or for a partitioned layout as a
        whole (no single key) the untagged name the partitions share."""
        if self.partitions > 1 and self.partition is None:
            return f"{self.prefix}:stream:{validate_name(name, 'stream')}"
        return self.stream(name)

    def epoch(self, name: str) -> str:
        return f"{self.prefix}:epoch:{self._name(name)}"

    def group_meta(self, name: str, group: str) -> str:
        """A hash beside the stream: the group's epoch, what its scope is synced to, last flush."""
        return f"{self.prefix}:group:{self._name(name)}:{validate_name(group, 'group')}"

    def dead_letter(self, name: str, group: str) -> str:
        return f"{self.prefix}:dlq:{self._name(name)}:{validate_name(group, 'group')}"

    def counters(self, name: str, group: str) -> str:
        """A hash beside the stream: what each member of the group applied, dead-lettered...,
        incremented in the ack's round trip (see :mod:`cachebus.consumers.counters`)."""
        return f"{self.prefix}:counters:{self._name(name)}:{validate_name(group, 'group')}"

    def cdc_position(self, name: str, slot: str) -> str:
        """A hash beside the stream: what the commit-log relay reading ``slot`` published up
        to (see :mod:`cachebus.producers.cdc.publish`)."""
        return f"{self.prefix}:cdc:{self._name(name)}:{validate_name(slot, 'slot')}"

    def registry_record(self, name: str) -> str:
        """A hash per logical stream: which registry version each producer and member runs,
        and the definitions behind each fingerprint seen (one key for every partition)."""
        return f"{self.prefix}:registry:{validate_name(name, 'stream')}"

    # ---- partitions ---------------------------------------------------------------------
    def for_partition(self, index: int) -> StreamKeys:
        """The keys of partition ``index`` of this layout."""
        return StreamKeys(self.prefix, self.partitions, index)

    def all_partitions(self) -> tuple[StreamKeys, ...]:
        """The keys of every partition, in order."""
        return tuple(self.for_partition(i) for i in range(self.partitions))

    def partition_of(self, namespace: str, id: str) -> int:
        """The partition carrying key events about ``(namespace, id)``."""
        return partition_of(namespace, id, self.partitions)

    def home_partition(self, namespace: str) -> int:
        """The partition carrying pattern and flush events of ``namespace``."""
        return home_partition(namespace, self.partitions)
