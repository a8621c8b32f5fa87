"""What the async and sync producers share: configuration, payloads, XADD steps, errors.

Everything here is free of I/O. A publish is: payloads (validated by
:class:`cachebus.contracts.EventFactory`), one span, the envelope per payload, then one
:class:`cachebus.core._io.Batch` of XADDs (one round trip) driven by the async or sync edge. The
replies are turned into entry ids or a :class:`PublishError` here, once for both edges.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from cachebus.contracts.codec import FIELD, encode_payloads, fingerprint_headers
from cachebus.contracts.errors import BackendError, BackendUnavailable, ContractError, PublishError
from cachebus.contracts.events import Event
from cachebus.contracts.factory import EventFactory, Ref, split_ids
from cachebus.contracts.keys import StreamKeys, validate_id
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_record import producer_field, record_fields
from cachebus.contracts.rules import MAX_ID_LENGTH, MAX_KEYS_TOTAL_CHARS, check_namespace
from cachebus.core._io import Batch, Step
from cachebus.core.connection import RedisSettings
from cachebus.producers._routing import Router
from cachebus.producers._tracing import Send, SendTracing

log = logging.getLogger("cachebus.producer")

__all__ = [
    "DEFAULT_MAXLEN",
    "DEFAULT_PUBLISH_TIMEOUT",
    "MAX_EVENTS_PER_ROUND_TRIP",
    "Payload",
    "PayloadBuffer",
    "ProducerCore",
    "chunked",
    "connect_refused",
    "producer_settings",
    "publish_bound",
]

Payload = Mapping[str, Any]

#: ``MAXLEN ~`` cap: a safety net against a runaway stream, far above any healthy backlog
#: (retention proper is the consumers' job: they trim only what every group has acked).
DEFAULT_MAXLEN = 1_000_000


def connect_refused(error: BaseException) -> bool:
    """The server refused the connection the command was to be sent on: it never left this
    process. Only a refusal while the connection was being acquired counts (redis-py's
    ``get_connection``, before anything is written); one on a retry, after an attempt that may
    have written the command to a server that then died, does not. Unsure is not refused."""
    seen: BaseException | None = error
    while seen is not None:
        if _refused(seen):
            return any(_acquiring(e) for e in _chain(error))
        seen = seen.__cause__ or seen.__context__
    return False


def _refused(error: BaseException) -> bool:
    if not isinstance(error, OSError):
        return False
    if error.errno == errno.ECONNREFUSED:
        return True
    # asyncio reports every address it tried in one OSError: refused if each of them was.
    codes = _ERRNO.findall(str(error)) if error.errno is None else []
    return bool(codes) and all(int(c) == errno.ECONNREFUSED for c in codes)


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(out) < 10:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _acquiring(error: BaseException) -> bool:
    """Its traceback passes through the pool handing out a connection."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "get_connection":
            return True
        tb = tb.tb_next
    return False


_ERRNO = re.compile(r"\[Errno (\d+)\]")


def publish_bound(settings: RedisSettings) -> float:
    """Worst-case seconds for one publish round trip to raise instead of returning an id.

    Each of the ``retries + 1`` attempts may wait ``pool_timeout`` for a pooled connection,
    connect (redis-py retries the connect itself, so up to ``retries + 1`` connect timeouts
    with backoff), then wait ``socket_timeout`` for the reply. Producers run without idle
    health-check PINGs, which would nest one more retry loop in each attempt; a stale pooled
    connection fails like any other attempt and is retried.
    """
    attempts = settings.retries + 1
    backoff = sum(
        min(settings.retry_backoff_cap, settings.retry_backoff_base * (2.0**i))
        for i in range(settings.retries)
    )
    per_attempt = (
        settings.pool_timeout
        + attempts * settings.socket_connect_timeout
        + backoff
        + settings.socket_timeout
    )
    return attempts * per_attempt + backoff


def producer_settings(settings: RedisSettings) -> RedisSettings:
    """``settings`` as a producer uses them: no idle health checks (see :func:`publish_bound`)."""
    return settings.with_options(health_check_interval=0)


#: Bound on one publish when the producer is given a client instead of settings (seconds):
#: what the :class:`RedisSettings` defaults add up to.
DEFAULT_PUBLISH_TIMEOUT = publish_bound(RedisSettings(url="redis://localhost"))
#: A batch is sent in round trips of at most this many XADDs.
MAX_EVENTS_PER_ROUND_TRIP = 1000
# Up to this many ids always fit one event, whatever their length.
_ALWAYS_ONE_EVENT = MAX_KEYS_TOTAL_CHARS // MAX_ID_LENGTH


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    stream_key: str
    maxlen: int | None
    timeout: float
    address: tuple[str, int]


class ProducerCore:
    """The I/O-free half of a producer."""

    def __init__(
        self,
        *,
        stream: str,
        keys: StreamKeys,
        producer_name: str,
        registry: Registry,
        maxlen: int | None,
        timeout: float,
        address: tuple[str, int],
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if maxlen is not None and maxlen < 1000:
            raise ContractError(
                f"maxlen={maxlen} would trim entries consumers have not read; it is a safety "
                "net only: keep it large (default 1,000,000) or None",
                rule="producer.maxlen",
            )
        if timeout <= 0:
            raise ContractError("publish timeout must be positive", rule="producer.timeout")
        self.factory = EventFactory(producer_name, registry)
        # Each event carries its namespace's registry fingerprint (drift detection).
        self.fingerprints = fingerprint_headers(registry)
        #: Set when the stream has several partitions (``keys.partitions > 1``).
        self.router = Router(keys, stream, maxlen) if keys.partitions > 1 else None
        # Our registry, recorded beside the stream with the first publish (once per producer).
        self._record: tuple[Any, ...] | None = (
            "HSET",
            keys.registry_record(stream),
            *(
                x
                for kv in record_fields(registry, producer_field(producer_name)).items()
                for x in kv
            ),
        )
        # A partitioned stream is named by its unpartitioned key in spans and messages.
        named = StreamKeys(keys.prefix) if self.router is not None else keys
        self.config = ProducerConfig(named.stream(stream), maxlen, timeout, address)
        self.where = f"{address[0]}:{address[1]}"
        self.tracing = SendTracing(self.config.stream_key, address, tracer_provider, meter_provider)
        # Bytes, so redis-py's encoder passes them through instead of encoding text per event.
        prefix: tuple[bytes, ...] = (b"XADD", self.config.stream_key.encode())
        if maxlen is not None:
            prefix += (b"MAXLEN", b"~", str(maxlen).encode())
        self._xadd_prefix = (*prefix, b"*", FIELD.encode())

    # ---- building ------------------------------------------------------------------------
    def event_payload(self, event: Event) -> Payload:
        """A model's fields, with its namespace checked against this producer's registry."""
        registry = self.factory.registry
        if event.namespace not in registry:
            check_namespace(event.namespace, registry)
        return event.__dict__

    def prepare(self, payloads: Sequence[Payload]) -> tuple[Send, list[tuple[Any, ...]]]:
        """The span of this round trip and its XADD commands (context injected); the first
        round trip of the producer also records its registry (:meth:`recorded`)."""
        span, headers = self.tracing.start(payloads)
        prefix = self._xadd_prefix
        try:
            if self.router is not None:
                calls = self.router.calls(payloads, headers, self.fingerprints)
            else:
                blobs = encode_payloads(payloads, headers, self.fingerprints)
                calls = [(*prefix, blob) for blob in blobs]
        except BaseException as exc:
            self.tracing.failed(span, exc)
            raise
        if self._record is not None:
            calls.append(self._record)
        return span, calls

    def recorded(self, calls: Sequence[tuple[Any, ...]], replies: list[Any]) -> list[Any]:
        """The replies of the XADDs alone. When ``calls`` carried the registry record (the
        first round trips of the producer, concurrent ones alike: HSET is idempotent), its
        reply is checked here: recorded, or refused (an ACL without the right: logged once,
        not tried again); unreachable keeps it for the next round trip."""
        if not calls or calls[-1][0] != "HSET":
            return replies
        reply = replies[-1]
        if self._record is not None and not isinstance(reply, BackendUnavailable):
            self._record = None
            if isinstance(reply, BaseException):
                log.warning(
                    "could not record this producer's registry beside the stream (%s); "
                    "`cachebus status` will not show it",
                    reply,
                )
        return replies[:-1]

    # ---- the step (shared by both edges) -----------------------------------------------
    def step(self, calls: list[tuple[Any, ...]]) -> Step[list[Any]]:
        replies: list[Any] = yield Batch(calls, operation=f"XADD {self.config.stream_key}",
                                         raise_on_error=False)  # fmt: skip
        return replies

    # ---- outcomes --------------------------------------------------------------------------
    def entry_ids(
        self, payloads: Sequence[Payload], replies: Sequence[Any], span: Send
    ) -> list[str]:
        """Entry ids for the replies, or :class:`PublishError` naming the refused events."""
        if self.router is not None:
            replies = self.router.fold(payloads, replies)
        try:  # every reply an id (bytes): the usual case, one pass
            ids = [reply.decode() for reply in replies]
        except AttributeError:  # an error object, or text from a decode_responses client
            pass
        else:
            self.tracing.succeeded(span, ids)
            return ids
        ids = []
        refused: list[str] = []
        first_error: BaseException | None = None
        for payload, reply in zip(payloads, replies, strict=True):
            if isinstance(reply, BaseException):
                refused.append(payload["event_id"])
                first_error = first_error or reply
            else:
                ids.append(reply.decode() if isinstance(reply, bytes) else str(reply))
        if first_error is not None:
            error = PublishError(
                f"{self.config.stream_key}: Redis refused {len(refused)} of {len(payloads)} "
                f"events ({first_error}); none of those was appended, the other "
                f"{len(ids)} were. Fix the cause, then publish the same events again",
                ambiguous=False,
                event_ids=tuple(refused),
            )
            error.__cause__ = first_error
            self.tracing.failed(span, error)
            raise error
        self.tracing.succeeded(span, ids)
        return ids

    def failure(
        self, payloads: Sequence[Payload], span: Send, cause: BaseException, *, timed_out: bool
    ) -> PublishError:
        """The :class:`PublishError` for a round trip that failed as a whole."""
        event_ids = tuple(p["event_id"] for p in payloads)
        if timed_out:
            cause = BackendUnavailable(
                f"XADD {self.config.stream_key}: {self.where} gave no reply within the "
                f"{self.config.timeout:.2f}s publish bound"
            )
        # A connection that failed or timed out may have carried the XADD already: ambiguous.
        # An error reply means Redis refused the command, a refused connect means it was never
        # sent: nothing was appended.
        ambiguous = (
            isinstance(cause, BackendUnavailable) and not connect_refused(cause)
        ) or not isinstance(cause, BackendError)
        state = "may or may not have been appended" if ambiguous else "were not appended"
        error = PublishError(
            f"{len(event_ids)} event(s) to {self.config.stream_key} {state}: {cause}. "
            "Publishing the same events again re-sends the same event_ids (a duplicate is "
            "harmless)",
            ambiguous=ambiguous,
            event_ids=event_ids,
        )
        error.__cause__ = cause
        self.tracing.failed(span, error)
        return error


class PayloadBuffer:
    """Events collected by a batch before its round trips (shared by async and sync)."""

    __slots__ = ("_core", "entry_ids", "event_ids", "payloads")

    def __init__(self, core: ProducerCore) -> None:
        self._core = core
        self.payloads: list[Payload] = []
        #: Entry ids, in order, once the batch was sent.
        self.entry_ids: list[str] = []
        self.event_ids: list[str] = []

    def add(self, event: Event) -> None:
        """Add a ready event (built by an :class:`EventFactory`)."""
        self.payloads.append(self._core.event_payload(event))

    def invalidate_keys(
        self, namespace: str, ids: Iterable[str | int], *, reason: str = ""
    ) -> None:
        """Ids of one namespace; more than fit one event are split over several."""
        factory = self._core.factory
        given = ids if type(ids) is list or type(ids) is tuple else list(ids)
        if len(given) <= _ALWAYS_ONE_EVENT:
            self.payloads.append(factory.keys_payload(namespace, given, reason))
            return
        for chunk in split_ids(validate_id(i) for i in given):
            self.payloads.append(factory.keys_payload(namespace, chunk, reason))

    def invalidate_pattern(self, namespace: str, pattern: str, *, reason: str = "") -> None:
        self.payloads.append(self._core.factory.pattern_payload(namespace, pattern, reason))

    def flush_namespace(self, namespace: str, *, reason: str = "") -> None:
        self.payloads.append(self._core.factory.flush_payload(namespace, reason))

    def invalidate(self, *refs: Ref, reason: str = "") -> None:
        """Items, patterns or events, grouped into as few events as they fit."""
        for event in self._core.factory.events_for(refs, reason=reason):
            self.add(event)

    def __len__(self) -> int:
        return len(self.payloads)


def chunked(payloads: Sequence[Payload]) -> list[Sequence[Payload]]:
    """Round trips of at most :data:`MAX_EVENTS_PER_ROUND_TRIP` events."""
    step = MAX_EVENTS_PER_ROUND_TRIP
    return [payloads[start : start + step] for start in range(0, len(payloads), step)]
