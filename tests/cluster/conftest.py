"""Fixtures for tests against a real local Redis Cluster (3 primaries, 3 replicas).

``redis_cluster`` is shared by the session (a cluster takes seconds to form): tests on it
isolate themselves by key prefix and never kill a node. Tests that kill a primary take a
private one from ``cluster_factory``; every node is ended by pid at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio

from cachebus.testing.cluster import RedisClusterHarness, find_redis_cli
from cachebus.testing.server import find_redis_server
from tests.harness.plugin import no_redis


def _require_binaries() -> None:
    if find_redis_server() is None or find_redis_cli() is None:
        no_redis("a local Redis Cluster needs the redis-server and redis-cli binaries")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterHarness]:
    """A cluster shared by the session: never kill, pause or reconfigure its nodes."""
    _require_binaries()
    with RedisClusterHarness() as cluster:
        yield cluster


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., RedisClusterHarness]]:
    """Private clusters for tests that kill nodes: ``make(primaries=3, replicas=1)``."""
    _require_binaries()
    clusters: list[RedisClusterHarness] = []

    def make(**kwargs: object) -> RedisClusterHarness:
        cluster = RedisClusterHarness(**kwargs)  # type: ignore[arg-type]
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
async def cluster_clients() -> AsyncIterator[
    Callable[[RedisClusterHarness], redis.asyncio.RedisCluster]
]:
    """Async cluster clients for a harness: ``connect(cluster)``; all closed after the test."""
    clients: list[redis.asyncio.RedisCluster] = []

    def connect(cluster: RedisClusterHarness) -> redis.asyncio.RedisCluster:
        client = cluster.async_client()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()
