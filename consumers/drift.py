"""Registry drift: a producer whose definition of a namespace differs from this consumer's.

Every event a cachebus producer publishes carries, in its envelope headers, the fingerprint of
its registry's definition of the event's namespace (template, TTL, compression, patterns).
A consumer given its own registry compares: a different fingerprint means two services run
different registry files, and ids built by one may not be the ids cached by the other: the
audit's "key patterns drift apart", which no cache library notices.

Drift never stops or skips anything (the event is applied as usual). It is counted
(``ConsumerStats.drifted``, the observer's ``on_drift``, the ``cachebus.consumer.drift``
metric) and logged once per producer, namespace and fingerprint: a WARNING naming them, both
fingerprints and, when the producer recorded its definition beside the stream, what differs.
Events without a fingerprint (other producers, FastStream) are not judged.

The member also records its own registry beside the stream (:meth:`DriftMonitor.record`),
once per start and after a server change, for ``cachebus status``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from cachebus.consumers.group import StreamGroup
from cachebus.consumers.observe import ConsumerObserver, ConsumerStats, safe_call
from cachebus.consumers.plan import Delivered
from cachebus.contracts.codec import FINGERPRINT_HEADER
from cachebus.contracts.errors import AccessDenied, BackendError
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_record import describe_difference, member_field, record_fields
from cachebus.core.connection import map_redis_errors

__all__ = ["DriftMonitor"]

log = logging.getLogger("cachebus.consumer")
#: Distinct (producer, namespace, fingerprint) drifts remembered; past it, drift is still
#: counted but no longer logged (a misbehaving producer must not grow memory without bound).
MAX_REPORTED = 1024


class DriftMonitor:
    """Compares event fingerprints with this member's registry; records the registry."""

    def __init__(
        self,
        registry: Registry,
        group: StreamGroup,
        stats: ConsumerStats,
        observer: ConsumerObserver,
    ) -> None:
        self.registry = registry
        self.group = group
        self.stats = stats
        self.observer = observer
        self._ours = registry.fingerprints()
        self._reported: set[tuple[str, str, str]] = set()
        self._recorded = False

    async def check(self, delivered: Sequence[Delivered]) -> None:
        """Count (and report, once each) the events whose fingerprint differs from ours."""
        ours = self._ours
        for d in delivered:
            theirs = d.headers.get(FINGERPRINT_HEADER)
            if theirs is None or theirs == ours.get(d.event.namespace, theirs):
                continue
            event = d.event
            self.stats.drifted += 1
            mine = ours[event.namespace]
            safe_call(self.observer, "on_drift", event.producer, event.namespace, theirs, mine)
            key = (event.producer, event.namespace, theirs)
            if key not in self._reported and len(self._reported) < MAX_REPORTED:
                self._reported.add(key)
                await self._report(event.producer, event.namespace, theirs, mine)

    async def _report(self, producer: str, namespace: str, theirs: str, mine: str) -> None:
        definition = await self._definition(theirs)
        log.warning(
            "registry drift: producer %s publishes namespace %s with definition %s, this "
            "consumer (group %s) has %s: %s. Events are still applied; roll the same registry "
            "file out to both",
            producer,
            namespace,
            theirs,
            self.group.group,
            mine,
            describe_difference(self.registry.get(namespace), definition),
        )

    async def _definition(self, fingerprint: str) -> dict[str, Any] | None:
        key = self.group.registry_key
        try:
            with map_redis_errors(f"HGET {key}", self.group.where):
                raw = await self.group.client.hget(key, f"def:{fingerprint}")
        except BackendError:  # reporting is best effort: the count already happened
            return None
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    async def record(self, *, again: bool = False) -> None:
        """Record our registry beside the stream (once; ``again`` after a server change)."""
        if self._recorded and not again:
            return
        fields = record_fields(self.registry, member_field(self.group.group, self.group.consumer))
        key = self.group.registry_key
        try:
            with map_redis_errors(f"HSET {key}", self.group.where):
                await self.group.client.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
        except AccessDenied as exc:
            log.warning("could not record the registry beside the stream: %s", exc)
        except BackendError:
            return  # unreachable now: the next housekeeping round tries again
        self._recorded = True
