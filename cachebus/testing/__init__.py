"""Real-Redis test and benchmark support: local servers, a fault proxy, TLS certificates.

Used by cachebus's own tests, benchmarks and demo, and usable by services that test their
invalidation paths against a real Redis.
"""

from cachebus.testing.proxy import FaultProxy, ProxyMode
from cachebus.testing.server import (
    Persistence,
    RedisServer,
    ServerOptions,
    TLSFiles,
    find_redis_server,
    free_port,
)
from cachebus.testing.tls import make_certificates

__all__ = [
    "FaultProxy",
    "Persistence",
    "ProxyMode",
    "RedisServer",
    "ServerOptions",
    "TLSFiles",
    "find_redis_server",
    "free_port",
    "make_certificates",
]
