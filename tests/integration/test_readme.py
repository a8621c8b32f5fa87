"""Every Python block and every command line of README.md is tested (tests/harness/readme.py
says how each block is marked): run as written against a real Redis, checked as an excerpt of
a tested file, or explained by the test its marker names. A broken snippet fails here."""

from __future__ import annotations

import ast
import importlib.resources
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cachebus.testing import RedisServer
from tests.harness.readme import README, ROOT, Block, blocks, readme_block

BLOCKS = blocks()
RUN_PY = [b for b in BLOCKS if b.is_python and b.marker is not None and b.marker.kind == "run"]
RUN_CLI = [b for b in BLOCKS if b.is_cli and b.marker is not None and b.marker.kind == "run"]

#: Runs a block as a script; with top-level ``await``, as ``python -m asyncio`` would.
RUNNER = """
import ast, asyncio, inspect, pathlib, sys
path = sys.argv[1]
source = pathlib.Path(path).read_text()
code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__", "__file__": path}
if code.co_flags & inspect.CO_COROUTINE:
    asyncio.run(eval(code, namespace))
else:
    exec(code, namespace)
"""


def _registry(block: Block) -> str:
    """The cachebus.toml a block runs beside: the quick start's, or the demo's."""
    options = dict(
        o.partition("=")[::2] for o in (block.marker.argument.split() if block.marker else [])
    )
    if options.get("registry") == "demo":
        return importlib.resources.files("cachebus.demo").joinpath("registry.toml").read_text()
    return readme_block("cachebus.toml")


def _env(url: str, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CACHEBUS_REDIS_URL": url,
        "CACHEBUS_REGISTRY": str(tmp / "cachebus.toml"),
    }


def test_every_python_and_command_block_is_marked() -> None:
    assert len(BLOCKS) > 10, "the README parser found almost no blocks"
    wrong = []
    for block in BLOCKS:
        if block.problem:
            wrong.append(f"{block.where}: {block.problem}")
        elif (block.is_python or block.is_cli) and block.marker is None:
            what = "Python" if block.is_python else "command-line"
            wrong.append(
                f"{block.where}: a {what} block without a marker: precede it with "
                "<!-- readme: run -->, or excerpt/fragment/skip (see tests/harness/readme.py)"
            )
        elif block.is_python and block.marker is not None and block.marker.kind == "skip":
            wrong.append(f"{block.where}: a Python block is run, an excerpt or a fragment")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker and b.marker.kind == "fragment"], ids=lambda b: b.where
)
def test_a_fragment_names_a_test_that_exists_and_compiles(block: Block) -> None:
    assert block.marker is not None
    path, _, name = block.marker.argument.partition("::")
    source = ROOT / path
    assert source.is_file(), f"{block.where}: its test file {path} does not exist"
    assert re.search(rf"def {re.escape(name)}\(", source.read_text()), (
        f"{block.where}: {path} has no test {name!r}"
    )
    if block.is_python:
        compile(block.text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker and b.marker.kind == "excerpt"], ids=lambda b: b.where
)
def test_an_excerpt_is_made_of_its_files_lines_in_order(block: Block) -> None:
    assert block.marker is not None
    lines = iter(line.rstrip() for line in (ROOT / block.marker.argument).read_text().splitlines())
    shown = [line.rstrip() for line in block.text.splitlines() if line.strip()]
    for wanted in (line for line in shown if line.strip() != "..."):  # "...": lines left out
        assert any(line == wanted for line in lines), (
            f"{block.where}: {wanted!r} is not (in this order) in {block.marker.argument}"
        )


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker and b.marker.kind == "named"], ids=lambda b: b.where
)
def test_a_named_block_is_read_by_a_test(block: Block) -> None:
    assert block.marker is not None
    name = block.marker.argument
    readers = [
        p for p in (ROOT / "tests").rglob("test_*.py") if f'readme_block("{name}")' in p.read_text()
    ]
    assert readers, f"{block.where}: no test reads the block named {name!r}"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_PY, ids=lambda b: b.where)
def test_a_python_block_runs_as_written(
    block: Block, redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "cachebus.toml").write_text(_registry(block))
    script = tmp_path / "snippet.py"
    script.write_text(block.text)
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", RUNNER, str(script)],
        cwd=tmp_path,
        env=_env(redis_server.url, tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    assert "ResourceWarning" not in done.stderr, f"{block.where} leaks:\n{done.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_CLI, ids=lambda b: b.where)
def test_a_command_block_runs_as_written(
    block: Block, redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "cachebus.toml").write_text(_registry(block))
    env = _env(redis_server.url, tmp_path)
    for line in block.text.splitlines():
        if line.startswith("export "):
            for name, _, value in (a.partition("=") for a in shlex.split(line)[1:]):
                if name != "CACHEBUS_REDIS_URL":  # the test's own server instead
                    env[name] = value
    for command in block.commands:
        wanted = re.search(r"#\s*exit (\d+)", command)
        argv = shlex.split(command, comments=True)
        assert argv[-1] != "&", f"{block.where}: a background command needs its own test"
        done = subprocess.run(
            [sys.executable, "-m", "cachebus.cli", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        expected = int(wanted.group(1)) if wanted else 0
        assert done.returncode == expected, (
            f"{block.where}: {command!r} exited {done.returncode}, not {expected}:\n"
            f"{done.stdout}\n{done.stderr}"
        )


def test_the_readme_names_only_files_of_the_repository() -> None:
    """Every path the README cites (``tests/...::test``, ``examples/...``) is in the repository,
    and no link or path leads outside it."""
    text = README.read_text()
    roots = ("tests/", "examples/", "cachebus/", "contracts/", "producers/", "consumers/", "infra/")
    cited = re.findall(r"`((?:" + "|".join(roots) + r")[\w./*-]*)(?:::(\w+))?", text)
    assert len(cited) > 20, "the README cites almost no file: the check is not reading it"
    missing = [path for path, _ in cited if not any(ROOT.glob(path.rstrip("/")))]
    missing += [
        f"{path}::{test}"
        for path, test in cited
        if test and (ROOT / path).is_file() and f"def {test}(" not in (ROOT / path).read_text()
    ]
    assert not missing, f"README.md cites what the repository does not have: {missing}"
    outside = re.findall(r"\]\((?!https?://|#)[^)]*\)|\.\./[\w/.-]+|/work/\S+", text)
    assert not outside, f"README.md leads outside the repository: {outside}"
