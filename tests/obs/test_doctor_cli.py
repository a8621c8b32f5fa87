"""``cachebus doctor`` says what to change: eviction, persistence, timeouts, groups, ACL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cachebus.contracts.keys import StreamKeys
from cachebus.testing import RedisServer, ServerOptions
from tests.obs.cli_helpers import cli, cli_json

pytestmark = pytest.mark.fault  # private redis-servers, configured per test


def checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_flags_an_allkeys_lru_instance_holding_the_stream(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    # Given the audit's setup: one instance for caches and stream, evicting any key
    server = redis_server_factory(ServerOptions(maxmemory="64mb", maxmemory_policy="allkeys-lru"))
    # When the doctor looks at it
    code, doc = cli_json("doctor", "--redis-url", server.url)
    # Then it is an error that says what to change, and the exit code fails
    found = checks(doc)["maxmemory_policy"]
    assert found["level"] == "error"
    assert "allkeys-lru" in found["detail"] and "cb:stream:inval" in found["detail"]
    assert "noeviction" in found["fix"]
    assert code == 1 and doc["errors"] >= 1


def test_a_healthy_deployment_passes_with_only_the_expected_notes(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(ServerOptions(persistence="aof", maxmemory_policy="noeviction"))
    code, doc = cli_json("doctor", "--redis-url", server.url, "--strict")
    found = checks(doc)
    assert code == 0, doc
    assert found["persistence"]["level"] == "ok"
    assert found["redis_version"]["level"] == "ok"
    assert found["acl"]["level"] == "ok"


def test_doctor_warns_about_missing_persistence_and_a_too_short_socket_timeout(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, doc = cli_json("doctor", "--redis-url", redis_server.url, "--strict")
    assert checks(doc)["persistence"]["level"] == "warn"
    assert code == 1  # --strict: warnings fail too
    monkeypatch.setenv("CACHEBUS_SOCKET_TIMEOUT", "0.5")
    code, doc = cli_json("doctor", "--redis-url", redis_server.url)
    found = checks(doc)["socket_timeout"]
    assert found["level"] == "error" and "CACHEBUS_SOCKET_TIMEOUT" in found["fix"]
    assert code == 1


def test_doctor_names_a_retired_group_holding_back_retention(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    stream = StreamKeys().stream("inval")
    client.xgroup_create(stream, "gone", id="$", mkstream=True)
    client.xadd(stream, {"__data__": b"{}"})
    client.close()
    _, doc = cli_json("doctor", "--redis-url", redis_server.url)
    found = checks(doc)["group gone"]
    assert found["level"] == "warn" and "holds back retention" in found["detail"]
    assert f"XGROUP DESTROY {stream} gone" in found["fix"]


def test_doctor_checks_the_acl_rights_of_each_configured_user(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    # Given an ACL file: a producer that may only XADD the stream, a consumer that cannot ack
    acl = tmp_path / "users.acl"
    acl.write_text(
        "user default on nopass ~* &* +@all\n"
        "user api on >pw ~cb:stream:* +xadd\n"
        "user weak on >pw ~cb:* +@read +@stream -xack +hset +hincrby +hdel +evalsha +info"
        " +unlink +scan +dbsize\n"
    )
    server = redis_server_factory(ServerOptions(aclfile=acl))
    # When the doctor checks them by role
    code, doc = cli_json(
        "doctor", "--redis-url", server.url,
        "--acl-user", "producer:api", "--acl-user", "consumer:weak", "--acl-user", "consumer:ghost",
    )  # fmt: skip
    found = [c for c in doc["checks"] if c["name"] == "acl"]
    by_user = {c["detail"].split("'")[1]: c for c in found}
    # Then the producer passes (it cannot record its registry: a warning, publishing works),
    # the consumer is refused XACK, and the unknown user is named
    assert by_user["default"]["level"] == "ok"
    assert by_user["api"]["level"] == "warn" and "HSET" in by_user["api"]["detail"]
    assert by_user["weak"]["level"] == "error" and "XACK" in by_user["weak"]["detail"]
    assert by_user["ghost"]["level"] == "error" and "does not exist" in by_user["ghost"]["detail"]
    assert code == 1


def test_doctor_cannot_reach_redis_and_says_so(redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    code, _ = cli("doctor", "--redis-url", url)
    assert code == 1
