"""Settings of the command line, from flags and the environment (``CACHEBUS_*``).

The library never reads the environment; the CLI reads it here, once, and builds the
library's typed config objects from it. Every setting is listed in the README's table.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    namespaces: list[str] = Field(default_factory=list)
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
    #: Port of /healthz, /readyz and /metrics (0: no server).
    health_port: int = 0
    health_host: str = "127.0.0.1"
    #: Socket timeouts of the Redis clients (seconds; the stream's must exceed block_ms).
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def stream_url(self) -> str:
        return self.redis_url.get_secret_value()

    def cache_redis_url(self) -> str:
        return (self.cache_url or self.redis_url).get_secret_value()
