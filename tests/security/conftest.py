"""A real redis-server loading a rendered ``users.acl``, and clients for each of its users."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio

from cachebus.acl import AclLayout, ServiceGrant, render_acl
from cachebus.consumers import Consumer, ConsumerConfig, RedisCacheSink, Sink
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache
from cachebus.core.connection import RedisSettings
from cachebus.testing import RedisServer, ServerOptions
from cachebus.testing.server import TLSFiles
from tests.harness.registry import REGISTRY

LAYOUT = AclLayout(
    services=(ServiceGrant("bot"), ServiceGrant("api"), ServiceGrant("workers", retention=True))
)
NAMESPACES = frozenset({"positions", "market"})


@dataclass
class Deployment:
    """One server, the layout its ACL was rendered from, and every user's password."""

    server: RedisServer
    layout: AclLayout
    passwords: dict[str, str] = field(repr=False)
    tls: TLSFiles | None = None
    opened: list[Any] = field(default_factory=list, repr=False)

    @property
    def keys(self) -> StreamKeys:
        return self.layout.keys

    @property
    def stream_key(self) -> str:
        return self.keys.stream(self.layout.stream)

    def user(self, role: str) -> str:
        """``producer``, ``cdc``, ``ops``, ``admin`` or a service name."""
        if role in {"producer", "cdc", "ops", "admin"}:
            return self.layout.user_name(role)
        return self.layout.service_user(role)

    def url(self, role: str, *, password: str | None = None) -> str:
        user = self.user(role)
        secret = self.passwords[user] if password is None else password
        scheme = "rediss" if self.tls else "redis"
        query = ""
        if self.tls is not None:
            query = f"?ssl_ca_certs={quote(str(self.tls.ca))}&ssl_cert_reqs=required"
        auth = f"{quote(user, safe='')}:{quote(secret, safe='')}"
        return f"{scheme}://{auth}@{self.server.host}:{self.server.port}/0{query}"

    def client(self, role: str) -> redis.Redis:
        client = redis.Redis.from_url(self.url(role), socket_timeout=5, retry=None)
        self.opened.append(client)
        return client

    def async_client(self, role: str) -> redis.asyncio.Redis:
        return redis.asyncio.Redis.from_url(self.url(role), socket_timeout=5, retry=None)

    def settings(self, role: str, **options: Any) -> RedisSettings:
        options.setdefault("socket_timeout", 3.0)
        return RedisSettings.from_url(self.url(role), **options)

    def cache(self, client: redis.asyncio.Redis, scope: str) -> Cache:
        return Cache(client, KeySpace(self.layout.prefix, scope, registry=REGISTRY))

    def consumer(
        self,
        client: redis.asyncio.Redis,
        service: str,
        cache: Cache | None = None,
        *,
        sink: Sink | None = None,
        **config: Any,
    ) -> Consumer:
        options: dict[str, Any] = {
            "stream": self.layout.stream,
            "group": service,
            "consumer": f"{service}-1",
            "namespaces": NAMESPACES,
            "block_ms": 100,
            "min_idle_ms": 1000,
            "claim_interval_s": 0.2,
            "housekeeping_interval_s": 0.2,
            "backoff_base_s": 0.02,
            "backoff_cap_s": 0.2,
        }
        options.update(config)
        sink = sink or RedisCacheSink(cache or self.cache(client, service))
        config_ = ConsumerConfig(**options)
        return Consumer(client, config_, [sink], keys=self.keys, registry=REGISTRY)

    def close(self) -> None:
        for client in self.opened:
            client.close()


def start_deployment(
    make: Callable[..., RedisServer],
    directory: Path,
    *,
    layout: AclLayout = LAYOUT,
    tls: TLSFiles | None = None,
) -> Deployment:
    passwords = {
        u.name: "pw-" + secrets.token_urlsafe(18) for u in layout.users() if u.role != "disabled"
    }
    acl = directory / "users.acl"
    acl.write_text(render_acl(layout, passwords))
    admin = layout.user_name("admin")
    server = make(ServerOptions(aclfile=acl, tls=tls), username=admin, password=passwords[admin])
    return Deployment(server, layout, passwords, tls)


@pytest.fixture
def deployment(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> Iterator[Deployment]:
    dep = start_deployment(redis_server_factory, tmp_path)
    yield dep
    dep.close()


def refused(call: Callable[[], object]) -> str:
    """Run a command that the ACL must refuse; return Redis's error text."""
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        call()
    text = str(caught.value)
    denied = isinstance(caught.value, redis.exceptions.NoPermissionError) or "can't access" in text
    assert denied, text
    return text
