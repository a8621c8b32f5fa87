"""The one error tree of cachebus.

Every error cachebus raises derives from :class:`CachebusError`, so ``except CachebusError``
catches all of them. Lower-layer errors (redis-py, pydantic, zstandard) are translated at one
boundary each and chained as ``__cause__``::

    CachebusError
    ├── ConfigError               a wrong URL or setting; fix the configuration
    ├── ContractError             an event broke a contract rule (``.rule`` names it)
    │   ├── EventDecodeError      a stream entry could not be read as an event
    │   └── RegistryError         the registry file is wrong (``.path``, ``.line``, ``.rule``)
    ├── CodecError                a cache value is corrupt, truncated or oversize
    ├── BackendError              Redis answered with an error (OOM, WRONGTYPE, ...)
    │   ├── AccessDenied          NOPERM, WRONGPASS: the credentials or the ACL; fix them
    │   ├── GroupMissingError     NOGROUP, UNBLOCKED: the stream or the consumer group is gone
    │   └── BackendUnavailable    Redis could not be reached in time, or said later; retryable
    │       ├── NotPrimary        READONLY: a replica now (a failover); reconnect, then retry
    │       └── CircuitOpenError  the circuit breaker is open; Redis is not even tried
    ├── PublishError              an event may not have been appended (``.ambiguous``)
    ├── ConsumerError             the consumer runtime cannot go on
    └── OutboxError               the outbox database failed or refused a statement

Nothing here is named ``ConnectionError`` or ``TimeoutError``: redis-py shadows the built-ins
with those names and we must never add to the confusion.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BackendError",
    "BackendUnavailable",
    "CachebusError",
    "CircuitOpenError",
    "CodecError",
    "ConfigError",
    "ConsumerError",
    "ContractError",
    "EventDecodeError",
    "GroupMissingError",
    "NotPrimary",
    "OutboxError",
    "PublishError",
    "RegistryError",
]


class CachebusError(Exception):
    """Root of every error cachebus raises."""


class ConfigError(CachebusError, ValueError):
    """A configuration value is wrong (a malformed URL, an unknown namespace, a bad bound)."""


class ContractError(CachebusError, ValueError):
    """An event or key broke a contract rule.

    ``rule`` is a short stable identifier of the rule (``"namespace.unknown"``,
    ``"pattern.bare_star"``...), so callers and tests can tell rules apart without parsing text.
    """

    def __init__(self, message: str, *, rule: str = "contract") -> None:
        super().__init__(message)
        self.rule = rule


class EventDecodeError(ContractError):
    """A stream entry could not be decoded into an event. It belongs in the dead-letter stream."""

    def __init__(self, message: str, *, rule: str = "decode", entry_id: str | None = None) -> None:
        super().__init__(message, rule=rule)
        self.entry_id = entry_id


class RegistryError(ContractError):
    """The registry file (or a registry given in code) breaks a rule.

    ``str()`` reads ``cachebus.toml:12: namespace 'positions': key template '{user_id' has an
    unclosed '{' (rule registry.template)``: the file, the line (when known), what is wrong and
    the rule, so an editor jumps to it and a test can match the rule.
    """

    def __init__(
        self, message: str, *, rule: str, path: str | None = None, line: int | None = None
    ) -> None:
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(f"{where}{message} (rule {rule})", rule=rule)
        self.path = path
        self.line = line
        self.detail = message


class CodecError(CachebusError):
    """A cache value could not be decoded (corrupt, truncated, unknown codec, over the cap)."""


class BackendError(CachebusError):
    """Redis answered with an error. Not retryable as such: the request itself is refused."""


class AccessDenied(BackendError):
    """Redis refused the credentials (WRONGPASS) or the ACL user lacks a right (NOPERM).

    A configuration error, never retried: the same request is refused again until someone
    fixes the URL's user and password or the ACL. A consumer stops on it with one clear line.
    """


class GroupMissingError(BackendError):
    """The stream or the consumer group does not exist (lost, evicted or deleted): NOGROUP, or
    UNBLOCKED when the stream is deleted under a blocked read."""


class BackendUnavailable(BackendError):
    """Redis could not be reached, did not answer within the configured timeout, or said to
    come back later (LOADING its dataset, BUSY running a script, READONLY: a replica now).

    For a write, a timeout is ambiguous: the command may have been applied.
    """


class NotPrimary(BackendUnavailable):
    """READONLY: the server is a replica now (after a failover). Drop the connections, connect
    again (a name may resolve to the new primary), then retry."""


class CircuitOpenError(BackendUnavailable):
    """The circuit breaker is open after repeated failures; Redis was not contacted."""


class PublishError(CachebusError):
    """An invalidation could not be published.

    ``ambiguous`` is true when Redis may have appended the entry anyway (a timeout after the
    command was sent). Re-publishing the same event re-sends the same ``event_id``, so a consumer
    applies it at most twice, which is harmless.
    """

    def __init__(
        self, message: str, *, ambiguous: bool = False, event_ids: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.event_ids = event_ids


class ConsumerError(CachebusError):
    """The consumer runtime cannot continue (misconfiguration, or a stop deadline exceeded)."""


class OutboxError(CachebusError):
    """The transactional outbox's database failed or refused a statement (the driver's error
    is chained as ``__cause__``). Rows are never lost by it: an unsent row stays unsent."""
