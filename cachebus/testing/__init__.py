"""Real-Redis test and benchmark support: local servers and clusters, a fault proxy, TLS,
and local PostgreSQL servers with logical decoding (the commit-log relay's tests).

Used by cachebus's own tests, benchmarks and demo, and usable by services that test their
invalidation paths against a real Redis.
"""

from typing import TYPE_CHECKING

from cachebus._lazy import lazy_exports

if TYPE_CHECKING:
    from cachebus.testing.cluster import RedisClusterHarness as RedisClusterHarness
    from cachebus.testing.postgres import PostgresServer as PostgresServer
    from cachebus.testing.proxy import FaultProxy as FaultProxy
    from cachebus.testing.proxy import ProxyMode as ProxyMode
    from cachebus.testing.server import RedisServer as RedisServer
    from cachebus.testing.server import ServerOptions as ServerOptions
    from cachebus.testing.tls import make_certificates as make_certificates
    from cachebus.testing.waits import eventually as eventually

__all__ = [
    "FaultProxy",
    "PostgresServer",
    "ProxyMode",
    "RedisClusterHarness",
    "RedisServer",
    "ServerOptions",
    "eventually",
    "make_certificates",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "cachebus.testing.cluster": ("RedisClusterHarness",),
            "cachebus.testing.postgres": ("PostgresServer",),
            "cachebus.testing.proxy": (
                "FaultProxy",
                "ProxyMode",
            ),
            "cachebus.testing.server": (
                "RedisServer",
                "ServerOptions",
            ),
            "cachebus.testing.tls": ("make_certificates",),
            "cachebus.testing.waits": ("eventually",),
        },
    )
