"""``cachebus registry check|show|diff`` and what a rollout of a new file needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_diff import Action, diff_registries

OLD = """\
[namespaces.products]
key = "{product_id}"
ttl_s = 300

[namespaces.carts]
key = "{user_id}:{cart_id}"
ttl_s = 60

[namespaces.legacy]
key = "{id}"
ttl_s = 60
"""
NEW = """\
[namespaces.products]
key = "{sku}"
ttl_s = 600
readers = ["web"]

[namespaces.carts]
key = "{user_id}:{cart_id}"
ttl_s = 60
compression = "none"

[namespaces.wishlists]
key = "{user_id}"
ttl_s = 60
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(OLD)
    new.write_text(NEW)
    return old, new


def test_a_diff_says_what_each_change_needs(tmp_path: Path) -> None:
    old, new = _files(tmp_path)
    changes = diff_registries(Registry.from_file(old), Registry.from_file(new))
    found = {(c.namespace, c.what): c for c in changes}
    assert found["products", "key"].action is Action.FLUSH_AFTER  # old ids unreachable
    assert found["products", "key"].needs_action
    assert found["products", "ttl_s"].action is Action.NONE
    assert found["products", "readers"].action is Action.NONE
    assert found["carts", "compression"].action is Action.NONE  # headers say how
    assert found["legacy", "removed"].action is Action.OPTIONAL
    assert found["wishlists", "added"].action is Action.NONE
    assert not diff_registries(Registry.from_file(old), Registry.from_file(old))


def test_a_new_dictionary_must_reach_readers_first(tmp_path: Path) -> None:
    (tmp_path / "a.zdict").write_bytes(b"a")
    (tmp_path / "b.zdict").write_bytes(b"b")
    base = '[namespaces.p]\nkey = "{id}"\nttl_s = 30\ndictionary = "{}"\n'
    (tmp_path / "old.toml").write_text(base.replace("{}", "a.zdict", 1))
    (tmp_path / "new.toml").write_text(base.replace("{}", "b.zdict", 1))
    (change,) = diff_registries(
        Registry.from_file(tmp_path / "old.toml"), Registry.from_file(tmp_path / "new.toml")
    )
    assert (change.what, change.action) == ("dictionary", Action.BEFORE)


def test_registry_check_validates_and_exits_2_with_the_error(tmp_path: Path) -> None:
    good = tmp_path / "cachebus.toml"
    good.write_text(OLD)
    done = CliRunner().invoke(app, ["registry", "check", str(good)])
    assert done.exit_code == 0 and "3 namespaces" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[namespaces.carts]\nkey = "{user_id"\nttl_s = 60\n')
    done = CliRunner().invoke(app, ["registry", "check", str(bad)])
    assert done.exit_code == 2
    assert f"{bad}:2: namespace 'carts': key template '{{user_id' has an unclosed '{{'" in (
        done.stderr
    )
    assert "(rule registry.template)" in done.stderr


def test_registry_show_lists_namespaces_and_fingerprints(tmp_path: Path) -> None:
    old, _ = _files(tmp_path)
    done = CliRunner().invoke(app, ["registry", "show", "--registry", str(old), "--json"])
    assert done.exit_code == 0
    document = json.loads(done.stdout)
    assert [ns["name"] for ns in document["namespaces"]] == ["carts", "legacy", "products"]
    assert document["fingerprint"] == Registry.from_file(old).fingerprint
    table = CliRunner().invoke(app, ["registry", "show", str(old)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "{user_id}:{cart_id}" in table.stdout


@pytest.mark.parametrize(("pair", "code"), [(("old", "new"), 1), (("old", "old"), 0)])
def test_registry_diff_exits_1_when_a_change_needs_action(
    tmp_path: Path, pair: tuple[str, str], code: int
) -> None:
    _files(tmp_path)
    paths = [str(tmp_path / f"{name}.toml") for name in pair]
    done = CliRunner().invoke(app, ["registry", "diff", *paths, "--json"])
    assert done.exit_code == code, done.output
    document = json.loads(done.stdout)
    assert document["needs_action"] is (code == 1)
    if code:
        key = next(c for c in document["changes"] if c["what"] == "key")
        assert key["action"] == "flush_after" and key["old"] == "{product_id}"


def test_commands_that_need_a_registry_say_how_to_give_one(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["registry", "check"], env={"CACHEBUS_REGISTRY": ""}, catch_exceptions=False
    )
    assert done.exit_code == 2 and "no registry: pass --registry PATH" in done.stderr
