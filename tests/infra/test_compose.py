"""infra/compose.yaml (no Docker engine here to run it): it uses the same configs and the
rendered ACL as the dev instances, and holds no secret."""

from __future__ import annotations

import re
from pathlib import Path

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = (INFRA / "compose.yaml").read_text()


def test_compose_mounts_the_configs_the_tests_check_and_files_that_exist() -> None:
    mounts = re.findall(r"- \./(redis/[\w.]+\.conf):/usr/local/etc/redis/redis\.conf:ro", COMPOSE)
    assert mounts == ["redis/stream.conf", "redis/cache.conf"]
    assert all((INFRA / m).is_file() for m in mounts)
    assert COMPOSE.count("image: redis:7.0") == 2
    assert "stream-data:/data" in COMPOSE  # the AOF survives the container


def test_compose_takes_users_from_the_rendered_acl_and_holds_no_password() -> None:
    assert COMPOSE.count("/run/secrets/users_acl") == 2
    assert "file: ./redis/users.local.acl" in COMPOSE
    gitignore = (INFRA.parent / ".gitignore").read_text()
    assert "infra/redis/users.local.acl" in gitignore and "infra/redis/secrets.env" in gitignore
    assert not re.search(r"(requirepass|\s>\S+|#[0-9a-f]{64})", COMPOSE)  # ACL password forms
    assert "${CACHEBUS_PASSWORD_CACHEBUS_OPS:?" in COMPOSE  # from --env-file, never inline
