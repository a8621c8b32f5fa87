"""The dev pair (infra/redis/*.conf + a rendered ACL) on free ports, ended by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cachebus.devredis import DevRedis, DevRedisConfig, start, stop
from cachebus.testing.server import find_redis_server, free_port
from tests.harness.plugin import no_redis


def dev_config(run_dir: Path) -> DevRedisConfig:
    stream_port = free_port()
    cache_port = free_port()
    while cache_port == stream_port:
        cache_port = free_port()
    return DevRedisConfig(run_dir=run_dir, stream_port=stream_port, cache_port=cache_port)


@pytest.fixture(scope="module")
def dev_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRedis]:
    if find_redis_server() is None:
        no_redis("the dev instances need a local redis-server")
    config = dev_config(tmp_path_factory.mktemp("dev-redis"))
    pair = start(config)
    try:
        yield pair
    finally:
        stop(config.run_dir)
