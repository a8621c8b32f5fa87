"""The key registry: the namespaces of one system, declared once and shared by every service.

The library ships no namespace. A system writes its registry in a TOML file (a
``cachebus.toml``, or ``[tool.cachebus]`` of a ``pyproject.toml``; see
:mod:`cachebus.contracts.registry_file`) and every producer, consumer and cache of that system
loads the same file: ``Registry.from_file("cachebus.toml")``. Each :class:`Namespace` says how
its ids are shaped (a :class:`~cachebus.contracts.templates.KeyTemplate`), how long values
live (``ttl_s``), how they are compressed, who writes and who reads it, and whether pattern
invalidations are allowed.

Each namespace has a *fingerprint*: a short stable hash of what producers and readers must
agree on (template, TTL, compression and dictionary, patterns). Producers put it in every
event's envelope headers, consumers compare it with their own, and a difference is *drift*
(two services built from different registry files), reported instead of silently missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from cachebus.contracts.errors import ContractError
from cachebus.contracts.names import KeyRef, PatternRef, validate_name
from cachebus.contracts.tables import TableMapping
from cachebus.contracts.templates import KeyTemplate, Parts

__all__ = ["FINGERPRINT_LENGTH", "Compression", "Namespace", "Registry"]

#: Hex digits of a fingerprint: 48 bits, plenty to tell a handful of registry versions apart.
FINGERPRINT_LENGTH = 12
#: Longest TTL accepted (a year, in seconds): a longer one is a typo, not a policy.
MAX_TTL_S = 366 * 24 * 3600


class Compression(StrEnum):
    """How a namespace's values are stored: zstd above the cache's size threshold (with the
    namespace's dictionary, if it has one), or never compressed (already compressed data)."""

    ZSTD = "zstd"
    NONE = "none"


def _digest(document: Any) -> str:
    blob = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:FINGERPRINT_LENGTH]


class Namespace:
    """One kind of cached data; immutable. ``key`` is a template, given as text or parsed."""

    __slots__ = (
        "compression",
        "description",
        "dictionary",
        "dictionary_sha256",
        "fingerprint",
        "key",
        "name",
        "owners",
        "patterns",
        "readers",
        "ttl_s",
    )

    def __init__(
        self,
        name: str,
        key: KeyTemplate | str,
        ttl_s: int,
        *,
        compression: Compression | str = Compression.ZSTD,
        dictionary: str | None = None,
        dictionary_sha256: str | None = None,
        owners: Iterable[str] = (),
        readers: Iterable[str] = (),
        patterns: bool = True,
        description: str = "",
    ) -> None:
        validate_name(name, "namespace")
        if name.startswith("__"):
            raise ContractError(
                "namespace names starting with '__' are reserved", rule="namespace.reserved"
            )
        template = KeyTemplate.parse(key) if isinstance(key, str) else key
        if not isinstance(template, KeyTemplate):
            raise ContractError(f"namespace {name!r}: key must be a template", rule="template.type")
        if type(ttl_s) is not int or not 1 <= ttl_s <= MAX_TTL_S:
            raise ContractError(
                f"namespace {name!r}: ttl_s must be whole seconds from 1 to {MAX_TTL_S}, "
                f"got {ttl_s!r}",
                rule="namespace.ttl",
            )
        try:
            mode = Compression(compression)
        except ValueError:
            known = ", ".join(repr(c.value) for c in Compression)
            raise ContractError(
                f"namespace {name!r}: compression {compression!r} is not one of {known}",
                rule="namespace.compression",
            ) from None
        if dictionary is not None and mode is Compression.NONE:
            raise ContractError(
                f"namespace {name!r}: a dictionary needs compression = 'zstd'",
                rule="namespace.dictionary",
            )
        owners, readers = tuple(owners), tuple(readers)
        for service in (*owners, *readers):
            validate_name(service, "service")
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "key", template)
        set_(self, "ttl_s", ttl_s)
        set_(self, "compression", mode)
        #: A zstd dictionary file (``cachebus codec train``), as written in the registry file.
        set_(self, "dictionary", dictionary)
        #: SHA-256 of the dictionary's bytes (the loader reads the file); in the fingerprint.
        set_(self, "dictionary_sha256", dictionary_sha256)
        #: Services that publish invalidations of it, and services that cache it.
        set_(self, "owners", owners)
        set_(self, "readers", readers)
        #: Whether pattern invalidations are allowed (each one SCANs the namespace).
        set_(self, "patterns", bool(patterns))
        set_(self, "description", description)
        set_(self, "fingerprint", _digest(self.definition()))

    name: str
    key: KeyTemplate
    ttl_s: int
    compression: Compression
    dictionary: str | None
    dictionary_sha256: str | None
    owners: tuple[str, ...]
    readers: tuple[str, ...]
    patterns: bool
    description: str
    fingerprint: str

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Namespace is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespace):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.fingerprint))

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, {self.key.text!r}, ttl_s={self.ttl_s})"

    def definition(self) -> dict[str, Any]:
        """What every service must agree on; the fingerprint is its hash."""
        return {
            "key": self.key.text,
            "ttl_s": self.ttl_s,
            "compression": self.compression.value,
            "dictionary": self.dictionary_sha256 or self.dictionary,
            "patterns": self.patterns,
        }

    def ref(self, parts: Parts | None = None, /, **named: str | int) -> KeyRef:
        """The item with these parts: ``registry["positions"].ref(user_id=42, view="all")``."""
        return KeyRef(self.name, self.key.render(parts, **named))

    def prefix(self, parts: Parts | None = None, /, **named: str | int) -> PatternRef:
        """Every item whose leading parts are these (``user_id=42``: all of one user's)."""
        if not self.patterns:
            raise ContractError(
                f"namespace {self.name!r} does not allow pattern invalidations "
                "(patterns = false in the registry)",
                rule="pattern.not_allowed",
            )
        return PatternRef(self.name, self.key.prefix_pattern(parts, **named))

    def to_dict(self) -> dict[str, Any]:
        """Every field, for ``cachebus registry show --json`` and the records in Redis."""
        return {
            "name": self.name,
            "key": self.key.text,
            "ttl_s": self.ttl_s,
            "compression": self.compression.value,
            "dictionary": self.dictionary,
            "dictionary_sha256": self.dictionary_sha256,
            "owners": list(self.owners),
            "readers": list(self.readers),
            "patterns": self.patterns,
            "description": self.description,
            "fingerprint": self.fingerprint,
        }


class Registry:
    """The namespaces a system knows. Events naming any other namespace are refused."""

    __slots__ = ("_by_name", "fingerprint", "source", "tables", "version")

    def __init__(
        self,
        namespaces: Iterable[Namespace],
        *,
        version: str = "",
        source: Path | None = None,
        tables: Iterable[TableMapping] = (),
    ) -> None:
        by_name: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.name in by_name:
                raise ContractError(
                    f"namespace {ns.name!r} declared twice", rule="namespace.duplicate"
                )
            by_name[ns.name] = ns
        self._by_name: Mapping[str, Namespace] = MappingProxyType(dict(sorted(by_name.items())))
        #: Free text the file declares (``[registry] version``), shown by ``cachebus status``.
        self.version = version
        #: The file it was loaded from, if any (relative dictionary paths start there).
        self.source = source
        #: Hash of every namespace's fingerprint: equal registries have equal fingerprints.
        self.fingerprint = _digest({n: ns.fingerprint for n, ns in self._by_name.items()})
        #: Database tables whose row changes invalidate (``[tables.*]``, read by ``cachebus
        #: cdc``); not part of the fingerprint: only the relay reads them.
        self.tables: tuple[TableMapping, ...] = tuple(tables)
        for mapping in self.tables:
            self.get(mapping.namespace)

    @classmethod
    def from_file(cls, path: str | Path) -> Registry:
        """Load and check a registry file (TOML); see :mod:`cachebus.contracts.registry_file`."""
        from cachebus.contracts.registry_file import load_registry

        return load_registry(Path(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str | Path = "<registry>") -> Registry:
        """A registry from TOML text (tests, embedded defaults); errors name ``source``."""
        from cachebus.contracts.registry_file import parse_registry

        return parse_registry(text, Path(source))

    # ---- lookups ---------------------------------------------------------------------------
    def get(self, name: str) -> Namespace:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            known = ", ".join(self._by_name) or "none"
            where = f" in {self.source}" if self.source is not None else ""
            raise ContractError(
                f"namespace {name!r} is not registered{where} (known: {known})",
                rule="namespace.unknown",
            ) from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Namespace]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def fingerprints(self) -> dict[str, str]:
        """Namespace -> fingerprint."""
        return {name: ns.fingerprint for name, ns in self._by_name.items()}

    def read_by(self, service: str) -> frozenset[str]:
        """The namespaces whose ``readers`` name ``service`` (its default scope)."""
        return frozenset(ns.name for ns in self if service in ns.readers)

    def owned_by(self, service: str) -> frozenset[str]:
        return frozenset(ns.name for ns in self if service in ns.owners)

    def dictionary_path(self, name: str) -> Path | None:
        """Where the namespace's dictionary file is (relative to the registry file)."""
        ns = self.get(name)
        if ns.dictionary is None:
            return None
        path = Path(ns.dictionary)
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    def with_namespaces(self, *extra: Namespace) -> Registry:
        return Registry(
            [*self, *extra], version=self.version, source=self.source, tables=self.tables
        )

    def summary(self) -> dict[str, Any]:
        """Version, fingerprints: what a service records beside the stream."""
        return {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "namespaces": self.fingerprints(),
        }

    def __repr__(self) -> str:
        where = f", source={str(self.source)!r}" if self.source is not None else ""
        return f"Registry({list(self.names)!r}{where})"
