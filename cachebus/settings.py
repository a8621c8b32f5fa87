"""Settings of a cachebus service: one object, from arguments, ``CACHEBUS_*`` variables and
defaults, plus the registry file it names.

:class:`CachebusSettings` (pydantic-settings) is public: an application builds one and hands it
to :class:`cachebus.service.ConsumerService`; the command line builds one from its flags. Each
setting has one name everywhere: the field ``claim_interval_s`` is the flag
``--claim-interval-s`` and the variable ``CACHEBUS_CLAIM_INTERVAL_S``. Every field of
:class:`~cachebus.consumers.ConsumerConfig` is a setting of the same name and default (its
``group`` is ``service``, which also names the cache scope), and the README's configuration
table lists them all (``tests/obs/test_configuration_doc.py``). An argument wins over its
variable, which wins over the default.

Nothing here touches Redis: :meth:`CachebusSettings.consumer_config` checks the whole consumer
configuration, namespaces included, before anything is sent.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cachebus.consumers.config import BroadcastConfig, ConsumerConfig
from cachebus.contracts.errors import ConfigError
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_file import discover_registry
from cachebus.core.connection import RedisSettings

__all__ = [
    "CONSUMER_FIELDS",
    "CachebusSettings",
    "explain_invalid",
    "unknown_variables",
    "variable_of",
]

_CONSUMER = ConsumerConfig.__dataclass_fields__
#: ConsumerConfig fields whose setting has another name.
_RENAMED = {"group": "service"}


def _default(name: str) -> Any:
    """The ConsumerConfig default of ``name``: one source for both."""
    return _CONSUMER[name].default


def _consumer(name: str, description: str) -> Any:
    return Field(default=_default(name), description=description)


class CachebusSettings(BaseSettings):
    """Every setting of a cachebus process. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="CACHEBUS_", extra="ignore")

    # ---- where ------------------------------------------------------------------------------
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="The Redis of the stream (noeviction, AOF).",
    )
    cache_url: SecretStr | None = Field(
        default=None, description="The Redis of the service's cache (default: the stream's)."
    )
    registry: Path | None = Field(
        default=None,
        description="The registry file: a cachebus.toml, or a pyproject.toml with a "
        "tool.cachebus table; default: one of those in the current directory.",
    )
    prefix: str = Field(default="cb", description="Prefix of every key cachebus writes.")
    stream: str = Field(
        default="inval", description="Logical stream name; the key is {prefix}:stream:{stream}."
    )
    partitions: int = Field(
        default=1,
        description="Partitions of the stream; every producer and consumer must agree.",
    )
    partition: int | None = Field(
        default=None,
        description="Consume this partition only (one process per partition); default: all.",
    )
    cluster: bool = Field(default=False, description="The URLs name a Redis Cluster node.")
    # ---- who --------------------------------------------------------------------------------
    service: str | None = Field(
        default=None, description="The service: its consumer group and its cache scope."
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces the service caches (comma-separated); default: those whose "
        "readers in the registry name the service.",
    )
    consumer: str = _consumer(
        "consumer", "Stable member name (default {service}-{host}-{ordinal})."
    )
    # ---- the consumer (ConsumerConfig, same names and defaults) ------------------------------
    read_count: int = _consumer("read_count", "Entries per read (XREADGROUP COUNT).")
    block_ms: int = _consumer("block_ms", "How long a read blocks waiting for entries (ms).")
    min_idle_ms: int = _consumer(
        "min_idle_ms", "Entries idle this long in another member are claimed (ms)."
    )
    claim_interval_s: float | None = _consumer(
        "claim_interval_s",
        "How often dead members' entries are claimed (s); default min(0.5, min_idle/2).",
    )
    claim_count: int = _consumer("claim_count", "Entries per claim (XAUTOCLAIM COUNT).")
    housekeeping_interval_s: float = _consumer(
        "housekeeping_interval_s",
        "How often run_id, idle members, the registry record and retention are checked (s).",
    )
    max_deliveries: int = _consumer(
        "max_deliveries", "Failures before an event is dead-lettered and its namespace flushed."
    )
    remove_idle_members_after_s: float = _consumer(
        "remove_idle_members_after_s",
        "Members holding nothing, idle this long, are removed (s; 0: never).",
    )
    lag_budget: int = _consumer("lag_budget", "/readyz fails above this lag (entries).")
    max_staleness_s: float = _consumer(
        "max_staleness_s", "/readyz fails after Redis was unreachable this long (s)."
    )
    grace_period_s: float = _consumer(
        "grace_period_s", "At stop: time to finish and ack the batch in flight (s)."
    )
    hard_deadline_s: float = _consumer(
        "hard_deadline_s", "At stop: the consumer is abandoned after this long (s)."
    )
    backoff_base_s: float = _consumer(
        "backoff_base_s", "First wait while Redis is unreachable (s; doubles)."
    )
    backoff_cap_s: float = _consumer(
        "backoff_cap_s", "Longest wait while Redis is unreachable (s)."
    )
    max_keys_per_pattern: int = _consumer(
        "max_keys_per_pattern", "A pattern matching more keys flushes its namespace instead."
    )
    retention: bool = _consumer("retention", "Trim the stream to what every group acked.")
    retention_interval_s: float = _consumer("retention_interval_s", "Trim at most this often (s).")
    max_stream_length: int = _consumer(
        "max_stream_length", "Hard cap; a group trimmed past it is a detected gap (flush)."
    )
    retired_group_after_s: float = _consumer(
        "retired_group_after_s",
        "A group whose members all idled this long is reported as retired (s).",
    )
    dedupe_window: int = _consumer(
        "dedupe_window", "Event ids remembered to count (and spare callbacks) duplicates."
    )
    # ---- around the consumer ----------------------------------------------------------------
    broadcast: bool = Field(
        default=False,
        description="Also keep an in-process L1 (LocalCache) through a broadcast consumer.",
    )
    local_maxsize: int = Field(
        default=10_000, description="Entries per namespace of the L1 (with broadcast)."
    )
    max_deletes_per_second: float | None = Field(
        default=None, description="Pace the cache's UNLINKs to this rate (unset: unpaced)."
    )
    health_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port of /healthz, /readyz, /metrics and /status (0: no server).",
    )  # fmt: skip
    health_host: str = Field(default="127.0.0.1", description="Address the probe server binds.")
    socket_timeout: float = Field(
        default=5.0,
        description="Redis socket timeout (s); the stream's is raised above block_ms + 1 s.",
    )
    connect_timeout: float = Field(default=2.0, description="Redis connect timeout (s).")
    metrics: bool = Field(
        default=True,
        description="Consumer metrics; Prometheus /metrics on the health port (otel extra).",
    )
    metrics_interval_s: float = Field(
        default=15.0,
        description="How often XPENDING, counters and cache health are sampled (s).",
    )
    traces: bool = Field(
        default=True,
        description="Consumer spans via the global tracer provider (no-op without an SDK).",
    )
    acl_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="doctor: users to check, as role:name (roles: producer, consumer).",
    )

    _registry: Registry | None = PrivateAttr(default=None)

    @field_validator("namespaces", "acl_users", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # ---- derived ----------------------------------------------------------------------------
    def stream_url(self) -> str:
        return self.redis_url.get_secret_value()

    def cache_redis_url(self) -> str:
        return (self.cache_url or self.redis_url).get_secret_value()

    @property
    def cache_is_stream(self) -> bool:
        """The cache lives on the stream's Redis (one instance for both)."""
        return self.cache_url is None or self.cache_redis_url() == self.stream_url()

    def load_registry(self) -> Registry:
        """The registry file named by ``registry``, else ``cachebus.toml`` (or a pyproject.toml
        with ``[tool.cachebus]``) in the current directory; loaded once."""
        if self._registry is None:
            path = self.registry or discover_registry(Path.cwd())
            if path is None:
                raise ConfigError(
                    "no registry: pass --registry PATH (or set CACHEBUS_REGISTRY), or put a "
                    "cachebus.toml in the current directory"
                )
            self._registry = Registry.from_file(path)
        return self._registry

    def registry_or_none(self) -> Registry | None:
        """The registry if one is named or found (its errors raise), else None: for
        commands that work without one (status, tail, doctor)."""
        if (
            self._registry is None
            and self.registry is None
            and discover_registry(Path.cwd()) is None
        ):
            return None
        return self.load_registry()

    def use_registry(self, registry: Registry) -> None:
        """Use this registry instead of loading the file (an application that has one)."""
        self._registry = registry

    def consumer_config(self, registry: Registry | None = None) -> ConsumerConfig:
        """The checked :class:`ConsumerConfig`: a service, registered namespaces, consistent
        timings. Raises :class:`ConfigError` (or the registry's error) before any I/O."""
        if not self.service:
            raise ConfigError("no service: pass --service NAME (or set CACHEBUS_SERVICE)")
        registry = registry or self.load_registry()
        namespaces = frozenset(self.namespaces) or registry.read_by(self.service)
        if not namespaces:
            raise ConfigError(
                f"service {self.service!r} caches no namespace: pass --namespaces a,b (or set "
                f"CACHEBUS_NAMESPACES), or name it in the readers of namespaces in "
                f"{registry.source or 'the registry'}"
            )
        unknown = sorted(ns for ns in namespaces if ns not in registry)
        if unknown:
            where = registry.source or "the registry"
            raise ConfigError(
                f"namespace {', '.join(map(repr, unknown))} is not registered in {where} "
                f"(known: {', '.join(registry.names)})"
            )
        values = {name: getattr(self, _RENAMED.get(name, name)) for name in _CONSUMER}
        values["namespaces"] = namespaces
        return ConsumerConfig(**values)

    def redis_settings(self, config: ConsumerConfig) -> tuple[RedisSettings, RedisSettings]:
        """The stream's and the cache's connection settings (URLs checked, no I/O); the
        stream's socket timeout is raised above the read's block time."""
        stream = RedisSettings.from_url(
            self.stream_url(),
            socket_timeout=max(self.socket_timeout, config.socket_timeout_floor),
            socket_connect_timeout=self.connect_timeout,
            client_name=config.consumer,
            cluster=self.cluster,
        )
        cache = RedisSettings.from_url(
            self.cache_redis_url(),
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            cluster=self.cluster,
        )
        return stream, cache

    def broadcast_config(self, config: ConsumerConfig) -> BroadcastConfig:
        """The broadcast (L1) consumer's configuration, from the same settings."""
        if self.partitions > 1 or self.cluster:
            raise ConfigError(
                "broadcast (the L1) reads one stream on one Redis: it needs partitions = 1 "
                "and no cluster"
            )
        return BroadcastConfig(
            stream=config.stream, namespaces=config.namespaces, read_count=config.read_count,
            block_ms=config.block_ms, max_staleness_s=config.max_staleness_s,
            backoff_base_s=config.backoff_base_s, backoff_cap_s=config.backoff_cap_s,
            grace_period_s=config.grace_period_s, dedupe_window=config.dedupe_window,
        )  # fmt: skip


#: The settings that are fields of ConsumerConfig (by their settings name).
CONSUMER_FIELDS = tuple(_RENAMED.get(name, name) for name in _CONSUMER)


_SECRETS = frozenset({"redis_url", "cache_url"})


def variable_of(name: str) -> str:
    """The environment variable of a setting: ``read_count`` -> ``CACHEBUS_READ_COUNT``."""
    return f"CACHEBUS_{name.upper()}"


def explain_invalid(exc: ValidationError, flags: Collection[str] = ()) -> str:
    """What is wrong, named the way the user gave it: ``--read-count`` for a setting in
    ``flags`` (given on the command line), else its variable (``CACHEBUS_READ_COUNT=abc``)."""
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = variable_of(name)
        secret = name in _SECRETS  # a URL may hold a password: named, never echoed
        if name in flags:
            who = f"--{name.replace('_', '-')}" + ("" if secret else f" {error.get('input')!r}")
        elif variable in os.environ:
            who = variable if secret else f"{variable}={os.environ[variable]}"
        else:
            who = name
        parts.append(f"{who}: {error['msg']}")
    return "; ".join(parts)


#: ``CACHEBUS_*`` variables that are not settings but are read elsewhere (the outbox's
#: commands, the demo's and a consumer's processes, the test harness): not typos.
_OTHER_VARIABLES = frozenset(
    {
        "CACHEBUS_OUTBOX_DATABASE_URL", "CACHEBUS_OUTBOX_TABLE", "CACHEBUS_RELAY_NAME",
        "CACHEBUS_DEMO_SPEC", "CACHEBUS_CONSUMER_ORDINAL", "CACHEBUS_NO_DOCKER",
        "CACHEBUS_DEMO_DATABASE_URL", "CACHEBUS_DEMO_POSTGRES", "CACHEBUS_CDC_DATABASE_URL",
        "CACHEBUS_PG_BINDIR",
    }
)  # fmt: skip
#: Families of variables: ``cachebus acl render`` writes CACHEBUS_PASSWORD_<USER>.
_OTHER_PREFIXES = ("CACHEBUS_PASSWORD_",)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A line for each ``CACHEBUS_*`` variable that nothing reads, naming the closest known
    one: pydantic-settings ignores variables that match no field, so a typo
    (``CACHEBUS_REDIS_ULR``) would silently leave the default in place. A warning, not an
    error: other tools may share the prefix."""
    settings = sorted(variable_of(name) for name in CachebusSettings.model_fields)
    known = {*settings, *_OTHER_VARIABLES}
    lines = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()  # settings' variables are read case-insensitively
        if not upper.startswith("CACHEBUS_") or upper in known:
            continue
        if upper.startswith(_OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, [*settings, *sorted(_OTHER_VARIABLES)], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a cachebus setting, ignored{hint}")
    return lines
