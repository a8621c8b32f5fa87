"""Real-Redis test and benchmark support: local servers and clusters, a fault proxy, TLS.

Used by cachebus's own tests, benchmarks and demo, and usable by services that test their
invalidation paths against a real Redis.
"""

from cachebus.testing.cluster import ClusterSlots, RedisClusterHarness, find_redis_cli
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
from cachebus.testing.waits import eventually

__all__ = [
    "ClusterSlots",
    "FaultProxy",
    "Persistence",
    "ProxyMode",
    "RedisClusterHarness",
    "RedisServer",
    "ServerOptions",
    "TLSFiles",
    "eventually",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "make_certificates",
]
