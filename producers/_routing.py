"""Routing events over the partitions of a stream (``StreamKeys(partitions=N)``, N > 1).

The rules live in :mod:`cachebus.contracts.partitions`, so every producer routes alike:

* a keys event goes to the partition of its keys; when its ids fall in several partitions it
  is split, one event per partition, each with the event id ``<event_id>.<partition>``: the
  split is deterministic, so publishing the same event again re-sends the same ids (a
  duplicate stays harmless) and the pieces never collide with each other or with other events;
* a pattern or flush event goes to its namespace's home partition.

An entry id returned for a partitioned stream names its partition: ``"<partition>/<id>"``,
and a split event's ids are joined with ``,`` (``"0/1700000000000-0,2/1700000000000-1"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cachebus.contracts.codec import FIELD, encode_payloads
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.rules import MAX_EVENT_ID_LENGTH

__all__ = ["Router", "piece_event_id"]

Payload = Mapping[str, Any]


def piece_event_id(event_id: str, partition: int) -> str:
    """The id of the piece of a split event that goes to ``partition``."""
    suffix = f".{partition}"
    return event_id[: MAX_EVENT_ID_LENGTH - len(suffix)] + suffix


class Router:
    """Builds the XADDs of payloads over ``keys.partitions`` streams and folds the replies."""

    __slots__ = ("_keys", "_prefixes")

    def __init__(self, keys: StreamKeys, stream: str, maxlen: int | None) -> None:
        self._keys = keys
        prefixes = []
        for part in keys.all_partitions():
            head: tuple[Any, ...] = ("XADD", part.stream(stream).encode())
            if maxlen is not None:
                head += (b"MAXLEN", b"~", str(maxlen).encode())
            prefixes.append((*head, b"*", FIELD.encode()))
        self._prefixes = tuple(prefixes)

    @property
    def stream_keys(self) -> tuple[str, ...]:
        return tuple(p[1].decode() for p in self._prefixes)

    def partitions(self, payload: Payload) -> list[int]:
        """The partitions ``payload`` goes to, in order (one unless a keys event is split)."""
        namespace = payload["namespace"]
        if payload["kind"] != "keys":
            return [self._keys.home_partition(namespace)]
        return sorted({self._keys.partition_of(namespace, k) for k in payload["keys"]})

    def pieces(self, payloads: Sequence[Payload]) -> list[tuple[int, Payload]]:
        """``(partition, payload)`` per XADD, in payload order."""
        out: list[tuple[int, Payload]] = []
        for payload in payloads:
            parts = self.partitions(payload)
            if len(parts) == 1:
                out.append((parts[0], payload))
                continue
            by_part: dict[int, list[str]] = {p: [] for p in parts}
            namespace = payload["namespace"]
            for key in payload["keys"]:
                by_part[self._keys.partition_of(namespace, key)].append(key)
            for part in parts:
                piece = dict(payload)
                piece["event_id"] = piece_event_id(payload["event_id"], part)
                piece["keys"] = tuple(by_part[part])
                out.append((part, piece))
        return out

    def calls(
        self,
        payloads: Sequence[Payload],
        headers: Mapping[str, str],
        fingerprints: Mapping[str, bytes] | None = None,
    ) -> list[tuple[Any, ...]]:
        pieces = self.pieces(payloads)
        blobs = encode_payloads((p for _, p in pieces), headers, fingerprints)
        return [
            (*self._prefixes[part], blob) for (part, _), blob in zip(pieces, blobs, strict=True)
        ]

    def fold(self, payloads: Sequence[Payload], replies: Sequence[Any]) -> list[Any]:
        """One reply per payload: ``b"<p>/<id>[,<p>/<id>...]"``, or the first error."""
        out: list[Any] = []
        position = 0
        for payload in payloads:
            parts = self.partitions(payload)
            mine = replies[position : position + len(parts)]
            position += len(parts)
            error = next((r for r in mine if isinstance(r, BaseException)), None)
            if error is not None:
                out.append(error)
                continue
            ids = [
                f"{part}/{r.decode() if isinstance(r, bytes) else r}"
                for part, r in zip(parts, mine, strict=True)
            ]
            out.append(",".join(ids).encode())
        return out
