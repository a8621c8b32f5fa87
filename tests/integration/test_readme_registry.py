"""The README's quick start for a project of its own, run as written against a real Redis.

Its three blocks (``cachebus.toml``, the shell lines, ``app.py``) are read from README.md, so
the documentation cannot drift from what works: a shop that never heard of the trading demo
declares its namespaces, checks the file, runs the sidecar for its service, publishes from
the command line and from the library, and its cache is invalidated.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cachebus.contracts.keys import KeySpace
from cachebus.contracts.registry import Registry
from cachebus.core import SyncCache
from cachebus.testing import RedisServer, eventually
from cachebus.testing.server import free_port
from tests.harness.readme import readme_block

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cachebus.cli"]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=out)


def _shell_env(shell: str, url: str) -> dict[str, str]:
    env = dict(os.environ)
    (exports,) = [line for line in shell.splitlines() if line.startswith("export ")]
    for assignment in shlex.split(exports)[1:]:
        name, _, value = assignment.partition("=")
        env[name] = value
    env["CACHEBUS_REDIS_URL"] = url  # the test's own server instead of the example's
    return env


async def test_the_readme_quick_start_runs_as_written(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "cachebus.toml").write_text(readme_block("cachebus.toml"))
    shell = readme_block("shell")
    env = _shell_env(shell, redis_server.url)
    registry = Registry.from_file(tmp_path / "cachebus.toml")
    commands = [shlex.split(line, comments=True) for line in shell.splitlines()]
    commands = [c for c in commands if c and c[0] == "cachebus"]
    assert [c[1] for c in commands] == ["registry", "consume", "publish", "publish"]

    # cachebus registry check
    checked = _run([*CLI, *commands[0][1:]], tmp_path, env)
    assert checked.returncode == 0, checked.stderr
    assert "2 namespaces" in checked.stdout

    # cachebus consume --service web ... & (on a free port instead of 9100)
    consume = commands[1][1:-1] if commands[1][-1] == "&" else commands[1][1:]
    port = free_port()
    consume[consume.index("--health-port") + 1] = str(port)
    sidecar = _start([*CLI, *consume], tmp_path, env, tmp_path / "consume.log")
    try:
        await eventually(lambda: _ready(port), within=30, what="the sidecar to be ready")
        client = redis_server.client()
        web = SyncCache(client, KeySpace(scope="web", registry=registry))
        web.set("products", "42", {"price": 10})
        web.set("carts", "7:1", ["a book"])
        web.set("carts", "70:1", ["a pen"])  # another user: a prefix never reaches it
        # cachebus publish products --key 42 ...; cachebus publish carts --pattern '7:*' ...
        for command in commands[2:]:
            done = _run([*CLI, *command[1:]], tmp_path, env)
            assert done.returncode == 0, done.stderr
        await eventually(
            lambda: web.get("products", "42") is None and web.get("carts", "7:1") is None,
            within=10,
            what="the sidecar to apply both invalidations",
        )
        assert web.get("carts", "70:1") == ["a pen"]
        client.close()
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=20) == 0, (tmp_path / "consume.log").read_text()
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()

    # python app.py: the same from the library (the composition root, the producer)
    (tmp_path / "app.py").write_text(readme_block("app.py"))
    app = _run([sys.executable, "app.py"], tmp_path, env)
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip().endswith("applied")
