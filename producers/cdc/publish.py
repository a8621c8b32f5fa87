"""Publishing committed transactions, and the relay's position, in one Redis transaction.

Each call sends the XADDs of some transactions and the position they reach (a hash beside the
stream: the PostgreSQL system, the slot, the end LSN of the last transaction) in one
MULTI/EXEC: the stream never holds an event whose position was not recorded, and the position
never runs ahead of the stream. The slot is confirmed to PostgreSQL only after that (by the
relay). Event ids are derived from each commit's LSN and the event's index in it, and the
event's time is the commit's: a relay that crashes after this call and before the confirm
reads the same transactions again and, when the recorded position already covers them, skips
them; when it does not (the position lost with Redis), it sends the same ids again, which
consumers apply harmlessly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cachebus.contracts.errors import AccessDenied, ConfigError, PublishError
from cachebus.contracts.factory import split_ids
from cachebus.contracts.ids import derived_event_id
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core._io import Batch, Step, run_sync
from cachebus.producers._core import DEFAULT_MAXLEN, Payload, ProducerCore
from cachebus.producers.cdc.changes import Transaction

__all__ = ["CdcPublisher", "Position", "position_key"]

#: The reason written in the events of a row change.
ROW_REASON = "row changed (cdc)"
_INDEX_BITS = 16


def position_key(keys: StreamKeys, stream: str, slot: str) -> str:
    return keys.cdc_position(stream, slot)


@dataclass(frozen=True, slots=True)
class Position:
    """What the relay last published, as recorded beside the stream."""

    system_id: str
    slot: str
    lsn: int
    updated_ms: int = 0
    gaps: int = 0
    last_gap: str = ""

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes]) -> Position | None:
        if not data or b"lsn" not in data:
            return None
        text = {k.decode(): v.decode() for k, v in data.items()}
        return cls(
            text.get("system_id", ""),
            text.get("slot", ""),
            int(text["lsn"]),
            int(text.get("updated_ms", "0")),
            int(text.get("gaps", "0")),
            text.get("last_gap", ""),
        )


def _event_id(lsn: int, index: int, ms: int) -> str:
    if index < 1 << _INDEX_BITS and lsn < 1 << 64:
        return derived_event_id(ms, (lsn << _INDEX_BITS) | index)
    return f"cdc-{lsn:x}-{index}"


class CdcPublisher:
    """Sends transactions' events and the position through one sync Redis client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str,
        keys: StreamKeys,
        registry: Registry,
        slot: str,
        system_id: str,
        producer_name: str = "cdc",
        maxlen: int | None = DEFAULT_MAXLEN,
        timeout: float = 10.0,
    ) -> None:
        if keys.partitions != 1:
            raise ConfigError(
                "cachebus cdc publishes to one stream: partitioned streams are not supported "
                "yet (the events and the position must share one MULTI/EXEC)"
            )
        kwargs = client.connection_pool.connection_kwargs
        address = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        self.client = client
        self.core = ProducerCore(
            stream=stream,
            keys=keys,
            producer_name=producer_name,
            registry=registry,
            maxlen=maxlen,
            timeout=timeout,
            address=address,
            tracer_provider=None,
        )
        self.key = position_key(keys, stream, slot)
        self.slot = slot
        self.system_id = system_id

    # ---- the position ------------------------------------------------------------------
    def position(self) -> Position | None:
        """The recorded position of this slot on this PostgreSQL system (None: none yet)."""
        reply = self._run([("HGETALL", self.key)], False)[0]
        if isinstance(reply, BaseException):
            raise reply
        found = Position.from_hash(reply)
        if found is None or found.system_id != self.system_id or found.slot != self.slot:
            return None
        return found

    def _position_calls(self, lsn: int, gap: str = "") -> list[tuple[Any, ...]]:
        fields: list[Any] = ["system_id", self.system_id, "slot", self.slot, "lsn", lsn]
        fields += ["updated_ms", int(time.time() * 1000)]
        calls: list[tuple[Any, ...]] = [("HSET", self.key, *fields)]
        if gap:
            calls.append(("HSET", self.key, "last_gap", gap, "last_gap_ms", fields[-1]))
            calls.append(("HINCRBY", self.key, "gaps", 1))
        return calls

    def record(self, lsn: int) -> None:
        """Advance the position alone (nothing of ours committed up to ``lsn``)."""
        self._run(self._position_calls(lsn), True)

    # ---- events ------------------------------------------------------------------------
    def payloads(self, txn: Transaction) -> list[dict[str, Any]]:
        factory = self.core.factory
        out: list[dict[str, Any]] = []
        for namespace, reason in txn.flushes.items():
            out.append(factory.flush_payload(namespace, reason[:200]))
        for namespace, ids in txn.keys.items():
            for chunk in split_ids(ids):
                out.append(factory.keys_payload(namespace, chunk, ROW_REASON))
        for index, payload in enumerate(out):
            payload["event_id"] = _event_id(txn.commit_lsn, index, txn.commit_ms)
            payload["created_at_ms"] = txn.commit_ms
        return out

    def publish(self, txns: Sequence[Transaction], lsn: int) -> int:
        """The events of ``txns`` and the position ``lsn``, at once; returns events sent."""
        payloads = [p for txn in txns for p in self.payloads(txn)]
        return self._send(payloads, self._position_calls(lsn))

    def publish_gap(self, namespaces: Iterable[str], why: str, lsn: int) -> int:
        """A flush of each namespace, the gap's reason and the new position, at once."""
        factory = self.core.factory
        payloads = []
        for index, namespace in enumerate(sorted(set(namespaces))):
            payload = factory.flush_payload(namespace, why[:200])
            payload["event_id"] = f"cdc-gap-{lsn:x}-{index}"
            payloads.append(payload)
        return self._send(payloads, self._position_calls(lsn, why))

    def _send(self, payloads: Sequence[Payload], extra: list[tuple[Any, ...]]) -> int:
        core = self.core
        calls: list[tuple[Any, ...]] = []
        span = None
        if payloads:
            span, calls = core.prepare(payloads)
            if calls and calls[-1][0] == "HSET":  # the registry record rides along
                extra = [*extra, calls.pop()]
        replies = self._run([*calls, *extra], True)
        errors = [r for r in replies if isinstance(r, BaseException)]
        denied = next((e for e in errors if isinstance(e, AccessDenied)), None)
        if denied is not None:
            raise denied  # a configuration error: retrying cannot help
        if errors:
            raise PublishError(
                f"Redis refused part of a cdc transaction ({errors[0]}); the slot is not "
                "confirmed, the same events are sent again",
                ambiguous=True,
                event_ids=tuple(p["event_id"] for p in payloads),
            )
        if span is not None:
            core.entry_ids(payloads, replies[: len(calls)], span)
        return len(payloads)

    def _run(self, calls: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        def step() -> Step[list[Any]]:
            replies: list[Any] = yield Batch(
                calls, operation="cdc publish", transaction=transaction, raise_on_error=False
            )
            return replies

        return run_sync(step(), self.client, self.core.where)
