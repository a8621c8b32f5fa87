"""The key registry: the only place where Redis key strings and patterns are built.

The audit found the same data cached under drifting names (``api:positions:{id}`` vs
``positions:{id}:*``, ``market:`` vs ``market_detail:``). Here every kind of cached data is a
*namespace* declared once with its TTL class, and every key is ``(namespace, id)``:

* services publish invalidations as namespace-relative ids or globs (:class:`KeyRef`,
  :class:`PatternRef`), never as full Redis keys;
* each service's cache lives in its own *scope*, and :class:`KeySpace` turns a reference into
  that scope's Redis key: ``{prefix}:{scope}:{namespace}:{id}``.

Ids are data, not patterns: glob characters in ids are escaped whenever an id is put inside a
pattern, so ``user 4*2`` can never match ``user 4002``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from cachebus.contracts.errors import ContractError
from cachebus.contracts.partitions import hashed_part, home_partition, partition_of, partition_tag

__all__ = [
    "DEFAULT_REGISTRY",
    "DEFAULT_TTL_SECONDS",
    "MAX_ID_LENGTH",
    "MAX_PARTITIONS",
    "MAX_PATTERN_LENGTH",
    "CacheKeys",
    "KeyRef",
    "KeySpace",
    "Namespace",
    "NamespaceRegistry",
    "PatternRef",
    "StreamKeys",
    "TTLClass",
    "escape_glob",
    "glob_match",
    "validate_id",
    "validate_name",
    "validate_pattern",
]

#: Longest id accepted inside a key (characters).
MAX_ID_LENGTH = 512
#: Longest namespace-relative glob accepted in a pattern invalidation (characters).
MAX_PATTERN_LENGTH = 256
#: Most partitions a stream may be split into.
MAX_PARTITIONS = 256

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_GLOB_SPECIAL = frozenset("*?[]\\")


class TTLClass(StrEnum):
    """How long a kind of data may be served from cache. Values from the audit's settings."""

    PRICES = "prices"
    POSITIONS = "positions"
    MARKETS = "markets"
    USER_DATA = "user_data"


#: The audit's TTLs (``RedisSettings.ttl_*``), in seconds. Deployments override them in settings.
DEFAULT_TTL_SECONDS: Mapping[TTLClass, int] = MappingProxyType(
    {
        TTLClass.PRICES: 20,
        TTLClass.POSITIONS: 30,
        TTLClass.MARKETS: 300,
        TTLClass.USER_DATA: 3600,
    }
)


def validate_name(value: str, what: str) -> str:
    """Check a prefix, scope, namespace or stream name: no separators, no glob characters."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ContractError(
            f"{what} {value!r} is not a valid name: use 1-64 characters from "
            "letters, digits, '_', '.', '-', starting with a letter or digit",
            rule=f"{what}.invalid",
        )
    return value


def validate_id(value: str | int) -> str:
    """Return the id as a string, or raise :class:`ContractError` saying what is wrong."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise ContractError(
            f"key id must be a str or int, not {type(value).__name__}", rule="id.type"
        )
    if not text:
        raise ContractError("key id must not be empty", rule="id.empty")
    if len(text) > MAX_ID_LENGTH:
        raise ContractError(
            f"key id is {len(text)} characters long; the limit is {MAX_ID_LENGTH}",
            rule="id.too_long",
        )
    # Three substring tests are ~10x faster than a per-character scan on the publish path.
    if "\x00" in text or "\r" in text or "\n" in text:
        raise ContractError("key id must not contain NUL, CR or LF", rule="id.control_char")
    return text


def escape_glob(text: str) -> str:
    """Escape Redis glob metacharacters (``* ? [ ] \\``) so ``text`` only matches itself."""
    if not any(ch in _GLOB_SPECIAL for ch in text):
        return text
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "*":
            out.append(".*")
            i += 1
        elif ch == "?":
            out.append(".")
            i += 1
        elif ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : close]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            members = "".join("\\" + c if c in "\\]^[" else c for c in body)
            out.append(f"[{'^' if negate else ''}{members}]")
            i = close + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches the Redis glob ``pattern`` (same rules as SCAN MATCH)."""
    return _glob_regex(pattern).fullmatch(text) is not None


def _glob_literal_count(pattern: str) -> int:
    """Count characters of ``pattern`` that match literally, checking bracket balance."""
    literal = 0
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ContractError("pattern ends with a lone backslash", rule="pattern.syntax")
            literal += 1
            i += 2
            continue
        if ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                raise ContractError("pattern has an unclosed '['", rule="pattern.syntax")
            i = close + 1
            continue
        if ch == "]":
            raise ContractError("pattern has an unmatched ']'", rule="pattern.syntax")
        if ch not in "*?":
            literal += 1
        i += 1
    return literal


def validate_pattern(pattern: str) -> str:
    """Check a namespace-relative glob from an event.

    A pattern must name something narrower than the whole namespace: a bare ``*`` (or any
    pattern without a literal character, such as ``**`` or ``?*``) is refused; flushing a
    namespace is its own, explicit, operation.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ContractError("pattern must be a non-empty string", rule="pattern.empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ContractError(
            f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}",
            rule="pattern.too_long",
        )
    if "\x00" in pattern or "\r" in pattern or "\n" in pattern:
        raise ContractError("pattern must not contain NUL, CR or LF", rule="pattern.control_char")
    if _glob_literal_count(pattern) == 0:
        raise ContractError(
            f"pattern {pattern!r} matches the whole namespace; use flush_namespace() for that",
            rule="pattern.bare_star",
        )
    return pattern


@dataclass(frozen=True, slots=True)
class Namespace:
    """A kind of cached data, declared once with its TTL class."""

    name: str
    ttl_class: TTLClass
    description: str = ""

    def __post_init__(self) -> None:
        validate_name(self.name, "namespace")
        if self.name.startswith("__"):
            raise ContractError(
                "namespace names starting with '__' are reserved", rule="namespace.reserved"
            )


class NamespaceRegistry:
    """The set of namespaces a deployment knows. Events naming any other namespace are refused."""

    __slots__ = ("_by_name",)

    def __init__(self, namespaces: Iterable[Namespace]) -> None:
        by_name: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.name in by_name:
                raise ContractError(
                    f"namespace {ns.name!r} declared twice", rule="namespace.duplicate"
                )
            by_name[ns.name] = ns
        self._by_name: Mapping[str, Namespace] = MappingProxyType(by_name)

    def get(self, name: str) -> Namespace:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ContractError(
                f"namespace {name!r} is not registered (known: {known})", rule="namespace.unknown"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Namespace]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    def with_namespaces(self, *extra: Namespace) -> NamespaceRegistry:
        return NamespaceRegistry([*self, *extra])

    def __repr__(self) -> str:
        return f"NamespaceRegistry({list(self.names)!r})"


#: The audit's data (section 4): one namespace per kind, no more ``api:`` vs bare prefixes.
DEFAULT_REGISTRY = NamespaceRegistry(
    [
        Namespace("positions", TTLClass.POSITIONS, "a user's open positions; ids '{user}:...'"),
        Namespace("user", TTLClass.USER_DATA, "a user's profile; ids '{telegram_id}:profile'"),
        Namespace("market", TTLClass.MARKETS, "one market: '{id}:summary' and '{id}:detail'"),
        Namespace("market_by_condition", TTLClass.MARKETS, "market lookup by condition id"),
        Namespace("market_lists", TTLClass.MARKETS, "paginated market listings"),
        Namespace("prices", TTLClass.PRICES, "latest price of a market"),
    ]
)


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One cached item: a namespace and a namespace-relative id."""

    namespace: str
    id: str


@dataclass(frozen=True, slots=True)
class PatternRef:
    """Every item of a namespace whose id matches ``pattern`` (a glob; ids inside it escaped)."""

    namespace: str
    pattern: str


class CacheKeys:
    """Typed builders for the audit's data: the only place its key shapes are written.

    Every group of keys that is invalidated together shares a prefix ending in ``:``, so one
    pattern covers the group and nothing else (``{user}:*`` can never match user ``{user}0``).
    """

    @staticmethod
    def user_positions(user_id: str | int) -> KeyRef:
        """The position list the API client caches (was ``api:positions:{user_id}``)."""
        return KeyRef("positions", f"{validate_id(user_id)}:all")

    @staticmethod
    def user_position(user_id: str | int, position_id: str | int) -> KeyRef:
        return KeyRef("positions", f"{validate_id(user_id)}:{validate_id(position_id)}")

    @staticmethod
    def user_positions_all(user_id: str | int) -> PatternRef:
        """Everything cached about one user's positions (was ``positions:{user_id}:*``)."""
        return PatternRef("positions", f"{escape_glob(validate_id(user_id))}:*")

    @staticmethod
    def user_profile(telegram_user_id: str | int) -> KeyRef:
        return KeyRef("user", f"{validate_id(telegram_user_id)}:profile")

    @staticmethod
    def market(market_id: str) -> KeyRef:
        """The market summary (was ``market:{id}``)."""
        return KeyRef("market", f"{validate_id(market_id)}:summary")

    @staticmethod
    def market_detail(market_id: str) -> KeyRef:
        """The market detail (was ``market_detail:{id}``, a second name for the same market)."""
        return KeyRef("market", f"{validate_id(market_id)}:detail")

    @staticmethod
    def market_all(market_id: str) -> tuple[KeyRef, KeyRef]:
        """Both cached views of one market: invalidate them together, without a SCAN."""
        return (CacheKeys.market(market_id), CacheKeys.market_detail(market_id))

    @staticmethod
    def market_by_condition(condition_id: str) -> KeyRef:
        return KeyRef("market_by_condition", validate_id(condition_id))

    @staticmethod
    def market_list(list_name: str, page: int = 0) -> KeyRef:
        return KeyRef("market_lists", f"{validate_id(list_name)}:{validate_id(page)}")

    @staticmethod
    def market_list_pages(list_name: str) -> PatternRef:
        return PatternRef("market_lists", f"{escape_glob(validate_id(list_name))}:*")

    @staticmethod
    def price(market_id: str) -> KeyRef:
        return KeyRef("prices", validate_id(market_id))


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
    registry: NamespaceRegistry = field(default=DEFAULT_REGISTRY, compare=False)

    def __post_init__(self) -> None:
        validate_name(self.prefix, "prefix")
        validate_name(self.scope, "scope")

    @property
    def root(self) -> str:
        """Every key of this scope starts with this string."""
        return f"{self.prefix}:{self.scope}:"

    def scope_match(self) -> str:
        """A SCAN MATCH pattern for every key of the scope, reserved keys included."""
        return f"{escape_glob(self.prefix)}:{escape_glob(self.scope)}:*"

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
