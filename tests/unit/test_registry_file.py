"""The registry file: loaded, checked, every error naming the file, the line and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachebus.contracts.errors import ContractError, RegistryError
from cachebus.contracts.registry import Namespace, Registry
from cachebus.contracts.registry_file import discover_registry

GOOD = """\
[registry]
version = "v1"

[namespaces.products]
key = "{product_id}"
ttl_s = 300
owners = ["catalog"]
readers = ["web", "search"]

[namespaces.carts]
key = "{user_id}:{cart_id}"
ttl_s = 60
compression = "none"
patterns = false
readers = ["web"]
"""


def test_a_good_file_loads_with_every_field() -> None:
    registry = Registry.from_toml(GOOD, source="cachebus.toml")
    assert registry.names == ("carts", "products") and registry.version == "v1"
    carts = registry["carts"]
    assert carts.key.placeholders == ("user_id", "cart_id") and carts.ttl_s == 60
    assert carts.compression == "none" and not carts.patterns
    assert registry.read_by("web") == {"carts", "products"}
    assert registry.read_by("search") == {"products"} and registry.owned_by("catalog") == {
        "products"
    }


@pytest.mark.parametrize(
    ("text", "line", "rule", "says"),
    [
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 1\n\n[namespaces.positions]\nkey = "{user_id"\n'
         "ttl_s = 30\n", 6, "registry.template", "namespace 'positions': key template '{user_id' "
         "has an unclosed '{'"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 0\n', 3, "registry.ttl", "ttl_s must be whole"),
        ('[namespaces.a]\nkey = "{a}"\nttl = 3\n', 3, "registry.field", "did you mean 'ttl_s'"),
        ('[namespaces.a]\nkey = "{a}"\n', 1, "registry.field", "has no ttl_s"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = "30"\n', 3, "registry.field", "must be a int"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 3\ncompression = "lz4"\n', 4,
         "registry.compression", "'lz4' is not one of"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 3\nreaders = ["a b"]\n', 1, "registry.name",
         "not a valid name"),
        ('[namespaces."a b"]\nkey = "{a}"\nttl_s = 3\n', 1, "registry.name", "not a valid name"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 3\n\n[views.orders]\nnamespace = "a"\n', 5,
         "registry.section", "unknown section [views]"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 3\n\n[tables."public.o"]\nnamespace = "b"\n'
         'key = "{a}"\n', 5, "registry.table", "namespace 'b', which is not declared"),
        ("[registry]\nversion = 'x'\n", None, "registry.empty", "declares no namespace"),
        ("[namespaces.a\n", 1, "registry.syntax", "not valid TOML"),
        ('[namespaces.a]\nkey = "{a}"\nttl_s = 3\ndictionary = "nope.zdict"\n', 4,
         "registry.dictionary", "cannot read the dictionary 'nope.zdict'"),
    ],
)  # fmt: skip
def test_an_error_names_the_file_the_line_and_the_rule(
    text: str, line: int | None, rule: str, says: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        Registry.from_toml(text, source="cachebus.toml")
    error = caught.value
    assert (error.rule, error.line, error.path) == (rule, line, "cachebus.toml")
    assert says in str(error)
    where = f"cachebus.toml:{line}: " if line else "cachebus.toml: "
    assert str(error).startswith(where) and str(error).endswith(f"(rule {rule})")
    assert isinstance(error, ContractError)


def test_a_pyproject_table_is_a_registry_and_its_lines_count(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "shop"\n\n[tool.cachebus.namespaces.products]\n'
        'key = "{product_id"\nttl_s = 300\n'
    )
    with pytest.raises(RegistryError) as caught:
        Registry.from_file(pyproject)
    assert caught.value.line == 5 and caught.value.rule == "registry.template"
    pyproject.write_text('[project]\nname = "shop"\n')
    with pytest.raises(RegistryError, match=r"no \[tool.cachebus\] table"):
        Registry.from_file(pyproject)


def test_the_registry_is_found_in_the_current_directory(tmp_path: Path) -> None:
    assert discover_registry(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cachebus.namespaces.products]\nkey = "{id}"\nttl_s = 30\n'
    )
    assert discover_registry(tmp_path) == tmp_path / "pyproject.toml"
    (tmp_path / "cachebus.toml").write_text(GOOD)
    assert discover_registry(tmp_path) == tmp_path / "cachebus.toml"  # its own file first
    with pytest.raises(RegistryError, match="cannot read the registry file"):
        Registry.from_file(tmp_path / "missing.toml")


def test_a_dictionary_is_read_relative_to_the_file_and_its_content_is_fingerprinted(
    tmp_path: Path,
) -> None:
    (tmp_path / "dicts").mkdir()
    (tmp_path / "dicts" / "p.zdict").write_bytes(b"one")
    text = '[namespaces.p]\nkey = "{id}"\nttl_s = 30\ndictionary = "dicts/p.zdict"\n'
    (tmp_path / "cachebus.toml").write_text(text)
    before = Registry.from_file(tmp_path / "cachebus.toml")
    assert before.dictionary_path("p") == tmp_path / "dicts" / "p.zdict"
    (tmp_path / "dicts" / "p.zdict").write_bytes(b"two")
    after = Registry.from_file(tmp_path / "cachebus.toml")
    assert before["p"].fingerprint != after["p"].fingerprint  # same path, new dictionary


def test_fingerprints_cover_what_services_must_agree_on_and_only_that() -> None:
    base = Namespace("p", "{id}", 30)
    assert base.fingerprint == Namespace("p", "{id}", 30).fingerprint  # stable
    assert len(base.fingerprint) == 12
    for changed in (
        Namespace("p", "{sku}", 30),
        Namespace("p", "{id}", 31),
        Namespace("p", "{id}", 30, compression="none"),
        Namespace("p", "{id}", 30, patterns=False),
    ):
        assert changed.fingerprint != base.fingerprint
    same = Namespace("p", "{id}", 30, owners=("a",), readers=("b",), description="x")
    assert same.fingerprint == base.fingerprint
    one = Registry([base])
    assert one.fingerprint == Registry([Namespace("p", "{id}", 30)]).fingerprint
    assert one.fingerprint != Registry([Namespace("p", "{id}", 31)]).fingerprint
