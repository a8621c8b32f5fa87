"""Settings of the command line, from flags and the environment (``CACHEBUS_*``).

The library never reads the environment; the CLI reads it here, once, and builds the
library's typed config objects from it. Every setting is listed in the README's table.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["CachebusSettings"]


class CachebusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CACHEBUS_", extra="ignore")

    #: The Redis holding the invalidation stream (noeviction, AOF).
    redis_url: SecretStr = Field(default=SecretStr("redis://127.0.0.1:6379/0"))
    #: The Redis holding the service's cache (defaults to ``redis_url``).
    cache_url: SecretStr | None = None
    #: Prefix of every key cachebus writes.
    prefix: str = "cb"
    #: Logical name of the invalidation stream.
    stream: str = "inval"
    #: Partitions of the stream (every producer and consumer must agree; 1: one stream key).
    partitions: int = 1
    #: The Redis URLs name a node of a Redis Cluster.
    cluster: bool = False
    #: The service: its consumer group and its cache scope.
    service: str | None = None
    #: Namespaces the service caches (comma-separated in the environment).
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: This member's stable name (default: ``{service}-{host}-{ordinal}``).
    consumer_name: str | None = None
    #: Entries per read; how long a read blocks (ms).
    count: int = 500
    block_ms: int = 1000
    #: Claim entries idle this long in dead members (ms).
    min_idle_ms: int = 30_000
    #: Dead-letter an event after this many failed deliveries.
    max_deliveries: int = 5
    #: Trim the stream to what every group acked; hard length cap.
    retention: bool = False
    max_stream_length: int = 1_000_000
    #: Readiness budgets.
    lag_budget: int = 10_000
    max_staleness_s: float = 5.0
    #: Cap on cache deletes per second (keys UNLINKed by invalidations; unset: no cap).
    max_deletes_per_second: float | None = None
    #: Port of /healthz, /readyz and /metrics (0: no server).
    health_port: int = 0
    health_host: str = "127.0.0.1"
    #: Socket timeouts of the Redis clients (seconds; the stream's must exceed block_ms).
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    #: Serve Prometheus metrics on /metrics of the health port (needs the ``otel`` extra).
    metrics: bool = True
    #: How often the sidecar samples XPENDING and the cache's health for the gauges (seconds).
    metrics_interval_s: float = 15.0
    #: Make consumer spans through the global OpenTelemetry tracer provider (a no-op until
    #: an SDK is configured, e.g. by ``opentelemetry-instrument``).
    traces: bool = True
    #: A group whose members have all been idle this long is reported as retired (seconds).
    retired_group_after_s: float = 24 * 3600.0
    #: ``cachebus doctor``: users to check, as ``role:name`` (roles: producer, consumer).
    acl_users: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("namespaces", "acl_users", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def stream_url(self) -> str:
        return self.redis_url.get_secret_value()

    def cache_redis_url(self) -> str:
        return (self.cache_url or self.redis_url).get_secret_value()

    @property
    def cache_is_stream(self) -> bool:
        """The cache lives on the stream's Redis (one instance for both)."""
        return self.cache_url is None or self.cache_redis_url() == self.stream_url()
