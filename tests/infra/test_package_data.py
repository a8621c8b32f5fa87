"""What the CLI reads at run time ships inside the package, from one copy: ``infra/redis``.

``cachebus/_infra/*`` are links to the repository's ``infra/redis/`` files, so the checkout,
the editable install and the wheel (which stores the links' contents) read the same bytes;
``tests/packaging`` proves the wheel holds them.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from cachebus.devredis import ROLES, DevRedisConfig

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"stream.conf", "cache.conf", "users.acl"}


def test_package_data_are_links_to_infra() -> None:
    data = ROOT / "cachebus" / "_infra"
    assert {p.name for p in data.iterdir()} == SHIPPED
    for path in data.iterdir():
        assert path.is_symlink(), f"{path} is a copy that can drift from infra/redis"
        assert path.resolve() == (ROOT / "infra" / "redis" / path.name).resolve()


def test_the_package_reads_the_same_bytes_as_infra() -> None:
    shipped = importlib.resources.files("cachebus") / "_infra"
    for name in SHIPPED:
        assert (shipped / name).read_bytes() == (ROOT / "infra" / "redis" / name).read_bytes()


def test_dev_redis_reads_its_configs_from_the_package() -> None:
    config_dir = DevRedisConfig().config_dir
    assert config_dir == importlib.resources.files("cachebus") / "_infra"
    for role in ROLES:
        assert (config_dir / f"{role}.conf").is_file()
