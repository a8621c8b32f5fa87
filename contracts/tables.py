"""Table mappings: which cache ids a database row names, declared in the registry file.

The commit-log relay (``cachebus cdc``) turns each committed row change into invalidations.
A table maps to one or more namespaces; each mapping's ``key`` is a template over the row's
columns that renders the namespace-relative id (``{user_id}:all`` over ``positions``)::

    [tables."public.positions"]
    namespace = "positions"
    key = "{user_id}:all"

    [tables."public.markets"]
    invalidates = [
      { namespace = "market", key = "{id}:summary" },
      { namespace = "market_by_condition", key = "{condition_id}", columns = ["condition_id"] },
    ]

``columns`` (optional) is a filter for hot tables: an UPDATE invalidates only when one of
these columns (or a key column) changed; INSERT and DELETE always invalidate. An UPDATE that
changes a key column invalidates the old and the new id; a DELETE needs the key columns in the
old row (the table's ``REPLICA IDENTITY``, checked by the relay when it starts); a TRUNCATE
flushes the namespace. Errors are :class:`ContractError` with rules ``table.*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cachebus.contracts.errors import ContractError
from cachebus.contracts.templates import KeyTemplate

__all__ = ["MAPPING_FIELDS", "TableMapping", "parse_table_name"]

#: Keys of one mapping (and of a ``[tables."schema.table"]`` table that holds a single one).
MAPPING_FIELDS = {"namespace": (str,), "key": (str,), "columns": (list,)}

# Unquoted PostgreSQL identifiers (lower case as the server folds them), up to 63 bytes.
_IDENT = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def parse_table_name(name: str) -> tuple[str, str]:
    """``schema.table`` split in two; both parts plain lower-case identifiers."""
    schema, dot, table = name.partition(".")
    if not dot or not _IDENT.fullmatch(schema) or not _IDENT.fullmatch(table):
        raise ContractError(
            f"table {name!r} must be written 'schema.table' (e.g. 'public.positions') with "
            "plain lower-case identifiers",
            rule="table.name",
        )
    return schema, table


@dataclass(frozen=True, slots=True)
class TableMapping:
    """One table → one namespace: how a row of ``table`` names an id of ``namespace``."""

    table: str
    namespace: str
    key: KeyTemplate
    #: Filter: an UPDATE invalidates only when one of these columns changed (empty: any).
    columns: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, table: str, namespace: str, key: str, columns: tuple[str, ...] = ()
    ) -> TableMapping:
        parse_table_name(table)
        template = KeyTemplate.parse(key)
        if not template.placeholders:
            raise ContractError(
                f"table {table!r} → {namespace!r}: key {key!r} names no column; a row must "
                "name its id with at least one {column}",
                rule="table.key",
            )
        for column in columns:
            if not isinstance(column, str) or not _IDENT.fullmatch(column):
                raise ContractError(
                    f"table {table!r} → {namespace!r}: columns must be plain column names, "
                    f"got {column!r}",
                    rule="table.columns",
                )
        return cls(table, namespace, template, tuple(columns))

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns the id is made of."""
        return self.key.placeholders

    @property
    def watched(self) -> frozenset[str]:
        """Columns whose change makes an UPDATE invalidate (empty: every column)."""
        return frozenset((*self.columns, *self.key_columns)) if self.columns else frozenset()

    def describe(self) -> str:
        extra = f" when {', '.join(self.columns)} change" if self.columns else ""
        return f"{self.table} → {self.namespace} {self.key.text!r}{extra}"
