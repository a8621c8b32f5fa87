"""Row changes → the invalidations of one committed transaction, per the registry's tables.

:class:`TransactionBuilder` is fed the decoded pgoutput messages in order and returns a
:class:`Transaction` at each Commit: the ids each namespace lost (coalesced: an id changed ten
times in one transaction is invalidated once) and the namespaces to flush. The rules:

* INSERT: the new row's id; DELETE: the old row's id (from the replica identity);
* UPDATE: the new id, and the old one too when a key column changed; with a column filter,
  nothing when neither a filtered nor a key column changed (needs the full old row);
* TRUNCATE: a flush of every namespace the table maps to;
* an id that cannot be made (a NULL key column: no such item; a value an id cannot hold, or
  a key column the old row lacks: a flush of the namespace, never a silent skip), and more
  than ``max_keys`` ids of one namespace in one transaction: a flush of the namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cachebus.contracts.errors import ContractError
from cachebus.contracts.names import MAX_ID_LENGTH
from cachebus.contracts.tables import TableMapping
from cachebus.producers.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Message,
    Relation,
    Truncate,
    Value,
    pg_epoch_us_to_unix_ms,
)

__all__ = ["Transaction", "TransactionBuilder"]

# _id's answer when it flushed the namespace instead (an id never holds NUL).
_FLUSHED = "\x00flushed"


@dataclass(slots=True)
class Transaction:
    """What one committed transaction invalidates."""

    commit_lsn: int
    end_lsn: int
    commit_ms: int
    #: namespace → ids in first-seen order.
    keys: dict[str, dict[str, None]] = field(default_factory=dict)
    #: namespace → why it is flushed.
    flushes: dict[str, str] = field(default_factory=dict)
    #: Row changes of mapped tables seen.
    changes: int = 0

    @property
    def empty(self) -> bool:
        return not self.keys and not self.flushes


@dataclass(frozen=True, slots=True)
class _Plan:
    mapping: TableMapping
    #: Index of each key column in the row (None: the table lacks it).
    key_at: tuple[int | None, ...]
    #: Whether each key column is in the replica identity (a 'K' old row carries it).
    in_identity: tuple[bool, ...]
    #: Indices of the filter's columns (empty: every change counts).
    watched_at: tuple[int, ...]
    missing: str = ""
    #: The template's first literal, and per key column: (index, separator, literal after).
    head: str = ""
    fast: tuple[tuple[int, str, str], ...] = ()


_SLOW = "\x00slow"


def _fast_id(plan: _Plan, row: list[Value]) -> str | None:
    """The id in the common case (every part plain text), None for a NULL part, _SLOW when
    the template's own checks must decide (they also word the error)."""
    out = plan.head
    for at, separator, after in plan.fast:
        value = row[at]
        if value is None:
            return None
        if value is UNCHANGED:
            return _SLOW
        text = value.decode()
        if not text or "\x00" in text or "\r" in text or "\n" in text:
            return _SLOW
        if separator and separator in text:
            return _SLOW
        out += text + after
    return out if len(out) <= MAX_ID_LENGTH else _SLOW


class TransactionBuilder:
    """Feeds on decoded messages; :meth:`feed` returns the transaction at its Commit."""

    def __init__(self, mappings: Iterable[TableMapping], *, max_keys: int = 10_000) -> None:
        self._by_table: dict[str, list[TableMapping]] = {}
        for mapping in mappings:
            self._by_table.setdefault(mapping.table, []).append(mapping)
        self.max_keys = max_keys
        self._plans: dict[int, list[_Plan]] = {}
        self._txn: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def feed(self, message: Message) -> Transaction | None:
        txn = self._txn
        if type(message) is Change:
            if txn is not None:
                plans = self._plans.get(message.oid)
                if plans:
                    txn.changes += 1
                    for plan in plans:
                        self._change(txn, plan, message)
        elif type(message) is Begin:
            ms = pg_epoch_us_to_unix_ms(message.commit_us)
            self._txn = Transaction(message.final_lsn, 0, ms)
        elif type(message) is Commit:
            self._txn = None
            if txn is not None:
                txn.end_lsn = message.end_lsn
                txn.commit_lsn = message.commit_lsn
            return txn
        elif type(message) is Relation:
            self._relation(message)
        elif type(message) is Truncate and txn is not None:
            for oid in message.oids:
                for plan in self._plans.get(oid, ()):
                    txn.changes += 1
                    txn.flushes.setdefault(plan.mapping.namespace, f"truncate {plan.mapping.table}")
        return None

    # ---- relations ----------------------------------------------------------------------
    def _relation(self, rel: Relation) -> None:
        mappings = self._by_table.get(rel.qualified)
        if not mappings:
            self._plans.pop(rel.oid, None)
            return
        index = {name: i for i, name in enumerate(rel.columns)}
        plans = []
        for mapping in mappings:
            absent = [c for c in (*mapping.key_columns, *mapping.columns) if c not in index]
            literals = mapping.key.literals
            plans.append(
                _Plan(
                    mapping,
                    tuple(index.get(c) for c in mapping.key_columns),
                    tuple(c in rel.identity for c in mapping.key_columns),
                    tuple(index[c] for c in mapping.watched if c in index),
                    f"{rel.qualified} has no column {', '.join(absent)}" if absent else "",
                    literals[0],
                    tuple(
                        (index.get(c, -1), literals[i + 1][:1], literals[i + 1])
                        for i, c in enumerate(mapping.key_columns)
                    ),
                )
            )
        self._plans[rel.oid] = plans

    # ---- one change, one mapping -----------------------------------------------------------
    def _change(self, txn: Transaction, plan: _Plan, change: Change) -> None:
        namespace = plan.mapping.namespace
        if namespace in txn.flushes:
            return
        if plan.missing:
            txn.flushes[namespace] = plan.missing
            return
        new = change.new
        old = change.old
        new_id = old_id = None
        if new is not None:
            new_id = self._id(txn, plan, new, old, change.old_kind)
            if new_id is _FLUSHED:
                return
        if old is not None:
            old_id = self._id(txn, plan, old, None, change.old_kind, old_row=True)
            if old_id is _FLUSHED:
                return
        elif change.kind == "D":
            txn.flushes[namespace] = f"delete on {plan.mapping.table} without its old row"
            return
        if change.kind == "D" and change.old_kind == "K" and not all(plan.in_identity):
            txn.flushes[namespace] = f"delete on {plan.mapping.table}: key not in the old row"
            return
        if (
            change.kind == "U"
            and plan.watched_at
            and change.old_kind == "O"
            and old is not None
            and new is not None
            and new_id == old_id
            and not any(new[i] is not UNCHANGED and new[i] != old[i] for i in plan.watched_at)
        ):
            return  # the filter: none of its columns changed
        ids = txn.keys.get(namespace)
        if ids is None:
            ids = txn.keys[namespace] = {}
        for ident in (old_id, new_id):
            if ident is not None:
                ids[ident] = None
        if len(ids) > self.max_keys:
            del txn.keys[namespace]
            txn.flushes[namespace] = f"more than {self.max_keys} ids in one transaction"

    def _id(
        self,
        txn: Transaction,
        plan: _Plan,
        row: list[Value],
        old: list[Value] | None,
        old_kind: str,
        *,
        old_row: bool = False,
    ) -> str | None:
        """The id ``row`` names; None when a key column is NULL (no such item); _FLUSHED
        when the namespace was flushed instead."""
        fast = _fast_id(plan, row)
        if fast is not _SLOW:
            return fast
        parts: dict[str, str] = {}
        mapping = plan.mapping
        for column, at, in_identity in zip(
            mapping.key_columns, plan.key_at, plan.in_identity, strict=True
        ):
            assert at is not None  # a missing column is plan.missing
            value = row[at]
            if old_row and old_kind == "K" and not in_identity:
                value = UNCHANGED  # a 'K' row carries the identity columns only
            if value is UNCHANGED and old is not None and (old_kind == "O" or in_identity):
                value = old[at]
            if value is UNCHANGED:
                if old_row:
                    return None  # the new row names it; it did not change
                txn.flushes[mapping.namespace] = (
                    f"{mapping.table}.{column} unknown in an update (TOASTed, not sent)"
                )
                return _FLUSHED
            if value is None:
                return None
            parts[column] = value.decode()
        try:
            return mapping.key.render(parts)
        except ContractError as exc:
            txn.flushes[mapping.namespace] = f"{mapping.table}: no id for a row ({exc.rule})"
            return _FLUSHED
