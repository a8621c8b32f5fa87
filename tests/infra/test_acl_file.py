"""The committed users.acl: what the generator renders, loadable, locked until passwords exist."""

from __future__ import annotations

import hashlib
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cachebus.acl import (
    DEFAULT_LAYOUT,
    AclLayout,
    ServiceGrant,
    load_or_create_secrets,
    password_env_name,
    render_acl,
)
from cachebus.cli import app
from cachebus.contracts.errors import ConfigError, ContractError
from cachebus.testing import RedisServer, ServerOptions

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "infra" / "redis" / "users.acl"


def test_the_committed_acl_file_is_what_the_generator_renders() -> None:
    assert COMMITTED.read_text() == render_acl(DEFAULT_LAYOUT), (
        "infra/redis/users.acl is stale: run `cachebus acl render --out infra/redis/users.acl`"
    )


def test_the_committed_acl_file_loads_and_lets_nobody_in_until_passwords_are_set(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    acl = tmp_path / "users.acl"
    shutil.copy(COMMITTED, acl)
    server = redis_server_factory(ServerOptions(aclfile=acl))  # ACL errors abort the start
    anonymous = server.client()
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()  # the default user is off
    for user in DEFAULT_LAYOUT.users():
        client = redis.Redis(host=server.host, port=server.port, username=user.name,
                             password="anything", socket_timeout=5, retry=None)  # fmt: skip
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
        client.close()
    anonymous.close()


def test_rendered_passwords_are_hashes_and_the_secrets_file_is_private_and_reused(
    tmp_path: Path,
) -> None:
    secrets_file = tmp_path / "secrets.env"
    first = load_or_create_secrets(secrets_file, DEFAULT_LAYOUT)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert set(first) == {u.name for u in DEFAULT_LAYOUT.users() if u.role != "disabled"}
    text = render_acl(DEFAULT_LAYOUT, first)
    for user, password in first.items():
        assert password not in text
        assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in text
        assert f"{password_env_name(user)}={password}" in secrets_file.read_text()
    assert text.count(" on resetpass #") == len(first)
    assert text.startswith("user default off resetpass")
    with secrets_file.open("a") as handle:
        handle.write("OTHER_SETTING=kept\n")
    assert load_or_create_secrets(secrets_file, DEFAULT_LAYOUT) == first
    assert "OTHER_SETTING=kept" in secrets_file.read_text()


@pytest.mark.parametrize("name", ["stream", "group", "dlq", "epoch"])
def test_a_service_whose_scope_would_cover_stream_keys_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be a cache scope"):
        AclLayout(services=(ServiceGrant(name),))


def test_bad_layouts_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="twice"):
        AclLayout(services=(ServiceGrant("bot"), ServiceGrant("bot")))
    with pytest.raises(ContractError, match="service"):
        ServiceGrant("bot:*")
    with pytest.raises(ConfigError, match="lacks"):
        render_acl(DEFAULT_LAYOUT, {"cachebus-svc-nobody": "pw"})
    with pytest.raises(ConfigError, match="spaces"):
        render_acl(DEFAULT_LAYOUT, {"cachebus-producer": "two words"})


def test_every_key_pattern_comes_from_the_key_registry() -> None:
    layout = AclLayout(services=(ServiceGrant("svc-a"),), prefix="app", stream="events")
    text = render_acl(layout)
    keys = layout.keys
    side = [keys.stream("events"), keys.epoch("events")]
    side += [keys.group_meta("events", "svc-a"), keys.dead_letter("events", "svc-a")]
    for key in side:
        assert key in text
    assert "~app:svc-a:*" in text and "cb:" not in text


def test_the_acl_command_renders_files_and_prints_no_password(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "users.acl"
    secrets_file = tmp_path / "secrets.env"
    args = ["acl", "render", "--secrets", str(secrets_file), "--out", str(out)]
    result = runner.invoke(app, [*args, "--services", "bot,api", "--retention", "api"])
    assert result.exit_code == 0, result.output
    layout = AclLayout(services=(ServiceGrant("bot"), ServiceGrant("api", retention=True)))
    passwords = load_or_create_secrets(secrets_file, layout)
    assert out.read_text() == render_acl(layout, passwords)
    assert not [p for p in passwords.values() if p in result.output]
    assert "cachebus-svc-api" in result.output
    wrong = runner.invoke(app, ["acl", "render", "--services", "bot", "--retention", "api"])
    assert wrong.exit_code == 2
    reserved = runner.invoke(app, ["acl", "render", "--services", "stream", "--retention", ""])
    assert reserved.exit_code == 2 and "cannot be a cache scope" in reserved.output


def test_transactions_survive_a_restart_under_the_rendered_acl(
    redis_server_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    # Redis replays the AOF's MULTI/EXEC blocks as the default user and (7.0) re-checks the
    # ACL at EXEC: a default user with -@all dropped them all at the restart (the cdc relay's
    # events and position, the groups' XCLAIMs), with only a line in Redis's log.
    # Given the generated ACL (the admin with a password) and an AOF
    secrets_file = tmp_path / "secrets.env"
    passwords = load_or_create_secrets(secrets_file, DEFAULT_LAYOUT)
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl(DEFAULT_LAYOUT, passwords))
    server = redis_server_factory(ServerOptions(aclfile=acl, persistence="aof-always"))
    admin = DEFAULT_LAYOUT.user_name("admin")

    def client() -> redis.Redis:
        return redis.Redis(host=server.host, port=server.port, username=admin,
                           password=passwords[admin], socket_timeout=5, retry=None)  # fmt: skip

    # When a transaction is committed and the server restarted (stopped cleanly)
    first = client()
    with first.pipeline(transaction=True) as pipe:
        pipe.xadd("s", {"a": "1"}).hset("h", "lsn", 1)
        pipe.execute()
    first.close()
    server.restart(crash=False)
    # Then it is still there
    again = client()
    try:
        assert again.xlen("s") == 1 and again.hget("h", "lsn") == b"1"
    finally:
        again.close()
