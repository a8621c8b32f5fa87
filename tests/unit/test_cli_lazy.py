"""The command line imports a command only to run it: fast help, and a missing extra is one line.

Startup speed itself is measured by ``cachebus bench startup``, not here.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import typer.main

from cachebus.cli import COMMANDS, EXTRA_OF, app

ROOT = Path(__file__).resolve().parents[2]

#: Nothing of these may load for `cachebus --help` or `cachebus version`.
HEAVY = ("redis", "pydantic", "pydantic_settings", "opentelemetry", "rich", "orjson", "zstandard")
COMMAND_MODULES = sorted({target.split(":")[0] for target, _ in COMMANDS.values()})


def _run_cli(*args: str, block: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter; print the modules it loaded on stderr's last line."""
    code = (
        "import sys, atexit\n"
        f"for m in {block!r}.split():\n"
        "    sys.modules[m] = None  # as if the extra were not installed\n"
        "atexit.register(lambda: print('MODULES', ' '.join(sys.modules), file=sys.stderr))\n"
        "from cachebus.cli import main\n"
        f"sys.argv = ['cachebus', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def _loaded(result: subprocess.CompletedProcess[str]) -> set[str]:
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("MODULES ")
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [["--help"], ["version"]])
def test_help_and_version_load_no_command_and_no_dependency(args: list[str]) -> None:
    result = _run_cli(*args)
    assert result.returncode == 0, result.stderr
    loaded = _loaded(result)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not loaded & set(COMMAND_MODULES)
    assert "cachebus.bench" not in loaded and "cachebus.demo" not in loaded
    if args == ["--help"]:
        for name in COMMANDS:
            assert name in result.stdout
    else:
        assert result.stdout.strip() == metadata.version("cachebus")


def test_a_command_loads_only_itself() -> None:
    result = _run_cli("schema")
    assert result.returncode == 0, result.stderr
    loaded = _loaded(result)
    assert "cachebus.ops.schema_cmd" in loaded
    assert not loaded & (set(COMMAND_MODULES) - {"cachebus.ops.schema_cmd"})


def test_each_listed_help_line_is_the_commands_own() -> None:
    group = typer.main.get_command(app)
    for name, (_, short_help) in COMMANDS.items():
        real = group.load(name)  # type: ignore[attr-defined]
        assert real.get_short_help_str(limit=200) == short_help, name


def test_a_missing_extra_is_one_line_and_exit_2() -> None:
    result = _run_cli("demo", "--seconds", "1", block="opentelemetry.sdk")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "cachebus demo needs the otel extra: pip install 'cachebus[otel]'"
    assert len(lines) == 2  # and the module list this test prints
    assert "Traceback" not in result.stderr


def test_every_extra_named_exists() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRA_OF.values()) == set(extras) - {"dev"}
