"""Reading the registry file: TOML (stdlib ``tomllib``), checked, with errors that point.

The file is a ``cachebus.toml``::

    [registry]
    version = "2024-06-01"              # optional, free text: shown by `cachebus status`

    [namespaces.positions]
    key = "{user_id}:{view}"            # the id template (see cachebus.contracts.templates)
    ttl_s = 30                          # how long values live, seconds
    compression = "zstd"                # or "none"; default "zstd"
    dictionary = "dicts/positions.zdict"  # optional; relative to this file
    owners = ["api"]                    # services that publish its invalidations
    readers = ["bot"]                   # services that cache it
    patterns = true                     # pattern invalidations allowed; default true
    description = "a user's open positions"

or the same tables under ``[tool.cachebus]`` of a ``pyproject.toml``
(``[tool.cachebus.namespaces.positions]``).

Every error is a :class:`~cachebus.contracts.errors.RegistryError` naming the file, the line of
the table (or of the offending key) and the rule. Each top-level section has its parser in
:data:`SECTIONS`; an unknown section is an error, and a new one (such as ``[tables.*]``) is one
more entry there.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachebus.contracts.errors import ContractError, RegistryError
from cachebus.contracts.registry import Namespace, Registry
from cachebus.contracts.tables import MAPPING_FIELDS, TableMapping

__all__ = [
    "NAMESPACE_FIELDS",
    "REGISTRY_FILE",
    "SECTIONS",
    "discover_registry",
    "load_registry",
    "parse_registry",
]

#: The registry file's usual name.
REGISTRY_FILE = "cachebus.toml"

_HEADER = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(?:#.*)?$")
_TOML_LINE = re.compile(r"at line (\d+)")

#: Keys of a ``[namespaces.NAME]`` table and the TOML type each takes.
NAMESPACE_FIELDS: Mapping[str, tuple[type, ...]] = {
    "key": (str,),
    "ttl_s": (int,),
    "compression": (str,),
    "dictionary": (str,),
    "owners": (list,),
    "readers": (list,),
    "patterns": (bool,),
    "description": (str,),
}
_REQUIRED = ("key", "ttl_s")
_REGISTRY_FIELDS: Mapping[str, tuple[type, ...]] = {"version": (str,), "description": (str,)}


@dataclass
class Document:
    """One registry file being read: its text (for line numbers) and what was parsed so far."""

    path: Path
    text: str
    #: ``("tool", "cachebus")`` in a pyproject.toml: headers there carry it first.
    prefix: tuple[str, ...] = ()
    version: str = ""
    namespaces: list[Namespace] = field(default_factory=list)
    tables: list[TableMapping] = field(default_factory=list)

    # ---- errors that point at a line ----------------------------------------------------
    def error(
        self, message: str, rule: str, table: tuple[str, ...] = (), key: str | None = None
    ) -> RegistryError:
        return RegistryError(message, rule=rule, path=str(self.path), line=self.line_of(table, key))

    def line_of(self, table: tuple[str, ...], key: str | None = None) -> int | None:
        """The line of ``[table]`` (with the document's prefix), or of ``key`` inside it."""
        lines = self.text.splitlines()
        want = (*self.prefix, *table)
        header = inside = None
        for number, line in enumerate(lines, 1):
            match = _HEADER.match(line)
            if not match or not want:
                continue
            dotted = _dotted(match.group(1))
            if dotted == want:
                header = number
                break
            if inside is None and dotted[: len(want)] == want:
                inside = number  # [tables.x] for the section [tables]
        if header is None and inside is not None and key is None:
            return inside
        if header is None:
            return self._line_of_key(lines, table) if table else None
        if key is None:
            return header
        for number in range(header, len(lines)):
            line = lines[number]
            if _HEADER.match(line):
                break
            if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                return number + 1
        return header

    def _line_of_key(self, lines: list[str], table: tuple[str, ...]) -> int | None:
        """A table written as a dotted key or inline (``positions = {...}``) under its parent."""
        for number, line in enumerate(lines, 1):
            if re.match(rf"^\s*\"?{re.escape(table[-1])}\"?\s*[.=]", line):
                return number
        return self.line_of(table[:-1]) if len(table) > 1 else None


def _dotted(header: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', header)
    return tuple(a or b or c for a, b, c in parts)


def _check_keys(
    doc: Document, table: tuple[str, ...], data: Mapping[str, Any], known: Mapping[str, Any]
) -> None:
    for key, value in data.items():
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
            raise doc.error(
                f"{_what(table)}: unknown key {key!r}{hint}", "registry.field", table, key
            )
        types = known[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            want = " or ".join(t.__name__ for t in types)
            raise doc.error(
                f"{_what(table)}: {key} must be a {want}, not {type(value).__name__}",
                "registry.field",
                table,
                key,
            )


def _what(table: tuple[str, ...]) -> str:
    if len(table) == 2 and table[0] == "namespaces":
        return f"namespace {table[1]!r}"
    if len(table) == 2 and table[0] == "tables":
        return f"table {table[1]!r}"
    return "[" + ".".join(table) + "]"


# ---- sections ------------------------------------------------------------------------------
def _registry_section(doc: Document, value: Any) -> None:
    if not isinstance(value, dict):
        raise doc.error("[registry] must be a table", "registry.field", ("registry",))
    _check_keys(doc, ("registry",), value, _REGISTRY_FIELDS)
    doc.version = str(value.get("version", ""))


def _namespaces_section(doc: Document, value: Any) -> None:
    if not isinstance(value, dict):
        raise doc.error("[namespaces] must hold one table per namespace", "registry.field")
    for name, table in value.items():
        doc.namespaces.append(_namespace(doc, name, table))


def _namespace(doc: Document, name: str, data: Any) -> Namespace:
    where = ("namespaces", name)
    if not isinstance(data, dict):
        raise doc.error(
            f"namespace {name!r} must be a table ([namespaces.{name}])", "registry.field", where
        )
    _check_keys(doc, where, data, NAMESPACE_FIELDS)
    for key in _REQUIRED:
        if key not in data:
            raise doc.error(f"namespace {name!r} has no {key}", "registry.field", where)
    for key in ("owners", "readers"):
        if not all(isinstance(s, str) for s in data.get(key, ())):
            raise doc.error(
                f"namespace {name!r}: {key} must be a list of service names",
                "registry.field",
                where,
                key,
            )
    digest = None
    if "dictionary" in data:
        digest = _dictionary_digest(doc, where, data["dictionary"])
    try:
        return Namespace(
            name,
            data["key"],
            data["ttl_s"],
            compression=data.get("compression", "zstd"),
            dictionary=data.get("dictionary"),
            dictionary_sha256=digest,
            owners=data.get("owners", ()),
            readers=data.get("readers", ()),
            patterns=data.get("patterns", True),
            description=data.get("description", ""),
        )
    except ContractError as exc:
        default: tuple[str, str | None] = ("registry.name", None)
        rule, point = _RULES.get(exc.rule, _RULES.get(exc.rule.split(".")[0], default))
        message = str(exc) if str(exc).startswith("namespace ") else f"namespace {name!r}: {exc}"
        raise doc.error(message, rule, where, point) from None


# The Namespace check that failed (its rule, or the rule's first part) -> the registry rule
# and the key of the table to point at.
_RULES: Mapping[str, tuple[str, str | None]] = {
    "template": ("registry.template", "key"),
    "namespace.ttl": ("registry.ttl", "ttl_s"),
    "namespace.compression": ("registry.compression", "compression"),
    "namespace.dictionary": ("registry.dictionary", "dictionary"),
}


def _dictionary_digest(doc: Document, where: tuple[str, ...], given: str) -> str:
    path = Path(given)
    if not path.is_absolute():
        path = doc.path.parent / path
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise doc.error(
            f"{_what(where)}: cannot read the dictionary {given!r} ({exc.strerror or exc}); "
            "relative paths start at the registry file's folder",
            "registry.dictionary",
            where,
            "dictionary",
        ) from None


def _tables_section(doc: Document, value: Any) -> None:
    """``[tables."schema.table"]``: one mapping inline, or ``invalidates = [{...}, ...]``."""
    if not isinstance(value, dict):
        raise doc.error("[tables] must hold one table per database table", "registry.field")
    known = {n.name: n for n in doc.namespaces}
    for name, data in value.items():
        where = ("tables", name)
        if not isinstance(data, dict):
            raise doc.error(
                f'table {name!r} must be a table ([tables."{name}"])', "registry.field", where
            )
        items = data.get("invalidates")
        if items is None:
            items = [data]
        else:
            _check_keys(doc, where, data, {"invalidates": (list,)})
        if not items or not all(isinstance(item, dict) for item in items):
            raise doc.error(
                f"table {name!r}: invalidates must be a list of {{namespace, key}} tables",
                "registry.field",
                where,
            )
        for item in items:
            doc.tables.append(_mapping(doc, where, name, item, known))


def _mapping(
    doc: Document,
    where: tuple[str, ...],
    table: str,
    data: dict[str, Any],
    known: Mapping[str, Namespace],
) -> TableMapping:
    _check_keys(doc, where, data, MAPPING_FIELDS)
    for key in ("namespace", "key"):
        if key not in data:
            raise doc.error(f"table {table!r}: a mapping has no {key}", "registry.field", where)
    namespace = known.get(data["namespace"])
    if namespace is None:
        raise doc.error(
            f"table {table!r} maps to namespace {data['namespace']!r}, which is not declared "
            f"(known: {', '.join(known) or 'none'})",
            "registry.table",
            where,
        )
    try:
        mapping = TableMapping.build(
            table, namespace.name, data["key"], tuple(data.get("columns", ()))
        )
    except ContractError as exc:
        raise doc.error(f"table {table!r}: {exc}", "registry.table", where) from None
    # The rendered id must have the namespace's shape: try it with a harmless sample row.
    sample = mapping.key.render({c: f"x{i}" for i, c in enumerate(mapping.key_columns)})
    if not namespace.key.matches(sample):
        raise doc.error(
            f"table {table!r}: key {mapping.key.text!r} does not make ids of namespace "
            f"{namespace.name!r}, shaped {namespace.key.text!r}",
            "registry.table",
            where,
        )
    return mapping


#: Top-level sections and their parsers, in the order they are read.
SECTIONS: dict[str, Callable[[Document, Any], None]] = {
    "registry": _registry_section,
    "namespaces": _namespaces_section,
    "tables": _tables_section,
}


# ---- entry points --------------------------------------------------------------------------
def parse_registry(text: str, path: Path) -> Registry:
    """Check registry TOML ``text``; ``path`` names it in errors (and anchors dictionaries)."""
    doc = Document(path, text)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        detail = _TOML_LINE.sub("", str(exc)).replace("(, column", "(column").strip()
        raise RegistryError(
            f"not valid TOML: {detail}", rule="registry.syntax", path=str(path), line=line
        ) from None
    if path.name == "pyproject.toml":
        doc.prefix = ("tool", "cachebus")
        data = data.get("tool", {}).get("cachebus")
        if not isinstance(data, dict):
            raise doc.error(
                "has no [tool.cachebus] table: declare the namespaces under "
                "[tool.cachebus.namespaces.NAME]",
                "registry.pyproject",
            )
    for name in data:
        if name not in SECTIONS:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise doc.error(
                f"unknown section [{name}]: a registry has {known}", "registry.section", (name,)
            )
    for name, parse in SECTIONS.items():
        if name in data:
            parse(doc, data[name])
    if not doc.namespaces:
        raise doc.error(
            "declares no namespace: add a [namespaces.NAME] table with key and ttl_s",
            "registry.empty",
        )
    return Registry(doc.namespaces, version=doc.version, source=path, tables=doc.tables)


def load_registry(path: Path) -> Registry:
    """Read and check the registry file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RegistryError(
            f"cannot read the registry file: {reason}", rule="registry.file", path=str(path)
        ) from None
    return parse_registry(text, path)


def discover_registry(folder: Path) -> Path | None:
    """``folder/cachebus.toml``, else ``folder/pyproject.toml`` if it has ``[tool.cachebus]``."""
    own = folder / REGISTRY_FILE
    if own.is_file():
        return own
    pyproject = folder / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return pyproject if isinstance(data.get("tool", {}).get("cachebus"), dict) else None
