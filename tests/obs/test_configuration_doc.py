"""The README's Configuration table is the one documented list of settings: it must name every
setting with its variable, and every ``cachebus consume`` flag it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from cachebus.cli import app
from cachebus.settings import CachebusSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in CachebusSettings.model_fields:
            rows[cells[0]] = cells
    return rows


def test_every_setting_is_in_the_table_with_its_environment_variable() -> None:
    rows = _rows()
    assert set(rows) == set(CachebusSettings.model_fields)
    for name, cells in rows.items():
        assert cells[1] == f"`CACHEBUS_{name.upper()}`"


def test_every_consume_flag_in_the_table_exists_and_every_consume_option_is_documented() -> None:
    command = typer.main.get_command(app).load("consume")  # type: ignore[attr-defined]
    real = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    documented = {f for cells in _rows().values() for f in re.findall(r"--[a-z-]+", cells[2])}
    assert documented <= real
    assert real - documented <= {"--help", "--log-level"}


def test_every_consumer_config_field_is_a_setting_of_the_same_name_and_default() -> None:
    import dataclasses

    from cachebus.consumers.config import ConsumerConfig
    from cachebus.settings import CONSUMER_FIELDS

    renamed = {"group": "service"}  # the service names its group and its cache scope
    for field in dataclasses.fields(ConsumerConfig):
        setting = renamed.get(field.name, field.name)
        assert setting in CONSUMER_FIELDS and setting in CachebusSettings.model_fields, field.name
        if field.default is not dataclasses.MISSING and field.name != "namespaces":
            assert CachebusSettings.model_fields[setting].default == field.default, field.name


def test_each_setting_has_one_name_in_code_flag_and_environment() -> None:
    from cachebus.consume_cmd import CONSUME_SETTINGS, flag_of

    command = typer.main.get_command(app).load("consume")  # type: ignore[attr-defined]
    flags = {p.name: p.opts[0] for p in command.params}
    for name in CONSUME_SETTINGS:
        assert flags[name] == flag_of(name) == "--" + name.replace("_", "-")
    assert set(CONSUME_SETTINGS) == set(CachebusSettings.model_fields) - {"acl_users"}
