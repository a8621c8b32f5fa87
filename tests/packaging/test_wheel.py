"""The wheel, as another team installs it: built once, installed into a fresh virtualenv.

Without extras: one import package (``cachebus``) and nothing of the checkout's top level,
``cachebus --help`` and ``version``, the public API, a project with its own ``contracts/``,
``producers/`` and ``consumers/`` publishing and consuming against a local redis-server, and a
one-line refusal for a command that needs an extra. Then, with ``[otel]``: ``cachebus demo``
from the wheel, in a directory that is not the checkout. The tests run in this order and share
the virtualenv (the last adds the extra). pip's cache makes the installs cheap after the first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cachebus.testing import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
OLD_ROOTS = ("contracts", "producers", "consumers", "cachecore")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # a directory far from the checkout: the checkout must not be importable

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(
        self, *argv: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEBUS_", "PYTHON"))}
        env.pop("REDIS_URL", None)
        env.pop("VIRTUAL_ENV", None)
        return subprocess.run(
            list(argv), cwd=cwd or self.workdir, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def python(self, code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin("python"), "-c", code, cwd=cwd)


def _pip(*args: str) -> None:
    # The checkout's pip drives the new virtualenv (--python): no pip of its own to install.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    _pip("wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(base / "dist"))
    (wheel,) = (base / "dist").glob("cachebus-*.whl")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    _pip("--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel))
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


def test_the_wheel_installs_one_package_cachebus(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"cachebus", next(t for t in tops if t.endswith(".dist-info"))}
    for shipped in ("_infra/stream.conf", "_infra/cache.conf", "_infra/users.acl",
                    "contracts/schema/invalidation-event.v1.json", "py.typed"):  # fmt: skip
        assert f"cachebus/{shipped}" in names
    # What pip recorded: every file it installed lies under cachebus/ (or is its metadata).
    result = installed.python(
        "import json\nfrom importlib import metadata\n"
        "print(json.dumps(sorted({str(f).split('/')[0] for f in metadata.files('cachebus')})))"
    )
    assert result.returncode == 0, result.stderr
    recorded = json.loads(result.stdout)
    assert [t for t in recorded if not t.endswith(".dist-info") and t != ".."] == ["cachebus"]


def test_no_top_level_name_of_the_checkout_leaks(installed: Installed) -> None:
    code = (
        "import importlib.util, cachebus.contracts, cachebus.core, cachebus.producers, "
        "cachebus.consumers\n"
        f"print([n for n in {OLD_ROOTS!r} if importlib.util.find_spec(n) is not None])\n"
        "print(cachebus.contracts.__file__)"
    )
    result = installed.python(code)
    assert result.returncode == 0, result.stderr
    leaked, where = result.stdout.splitlines()
    assert leaked == "[]"
    assert where.startswith(str(installed.venv)), "imported from the checkout, not the wheel"


def test_help_and_version_work_without_extras(installed: Installed) -> None:
    no_sdk = installed.python("import opentelemetry.sdk")
    assert no_sdk.returncode == 1 and "No module named 'opentelemetry.sdk'" in no_sdk.stderr
    helped = installed.run(installed.bin("cachebus"), "--help")
    assert helped.returncode == 0, helped.stderr
    assert "consume" in helped.stdout and "demo" in helped.stdout
    version = installed.run(installed.bin("cachebus"), "version")
    assert version.returncode == 0, version.stderr
    assert installed.wheel.name.startswith(f"cachebus-{version.stdout.strip()}-")


def test_the_public_api_imports_without_extras(installed: Installed) -> None:
    result = installed.python(
        "import cachebus\n"
        "values = [getattr(cachebus, name) for name in cachebus.__all__]\n"
        "from cachebus import Cache, Consumer, Producer, SyncCache, SyncProducer\n"
        "print(len(values), cachebus.__version__)"
    )
    assert result.returncode == 0, result.stderr
    count, version = result.stdout.split()
    assert int(count) > 20 and installed.wheel.name.startswith(f"cachebus-{version}-")


def test_a_command_needing_an_extra_says_so_in_one_line(installed: Installed) -> None:
    result = installed.run(installed.bin("cachebus"), "demo", "--seconds", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cachebus demo needs the otel extra: pip install 'cachebus[otel]'"
    )


APP = '''
"""A service whose own packages are named contracts, producers and consumers."""
import asyncio
import sys

import consumers
import contracts
import producers

assert (contracts.OWNER, producers.OWNER, consumers.OWNER) == ("app", "app", "app")

from cachebus import (
    Cache, CacheConfig, Consumer, ConsumerConfig, KeySpace, Producer, RedisCacheSink,
    RedisSettings, Registry, StreamKeys, async_client, close_shared_pools,
)
import cachebus.contracts

assert cachebus.contracts is not contracts

# The project's own registry: the library ships no namespace.
REGISTRY = Registry.from_toml(
    '[namespaces.products]\\nkey = "{sku}"\\nttl_s = 60\\n', source="app-registry.toml"
)


async def main(url: str) -> None:
    loop = asyncio.get_running_loop()
    settings = RedisSettings.from_url(url)
    client = async_client(settings)
    keys = StreamKeys("app")
    space = KeySpace(prefix="app", scope="svc", registry=REGISTRY)
    cache = Cache(client, space, CacheConfig(breaker=None))
    consumer = Consumer(
        client,
        ConsumerConfig(stream="inval", group="svc", consumer="svc-1",
                       namespaces=frozenset({"products"}), block_ms=100),
        [RedisCacheSink(cache)],
        keys=keys,
        registry=REGISTRY,
    )
    running = asyncio.ensure_future(consumer.run())
    deadline = loop.time() + 30
    while not consumer.health().ready:  # the group exists, its first flush is behind it
        assert loop.time() < deadline and not running.done(), consumer.health()
        await asyncio.sleep(0.05)
    await cache.set("products", "42", {"price": 1})
    assert await cache.get("products", "42") == {"price": 1}
    producer = Producer(settings, producer_name="app", keys=keys, registry=REGISTRY)
    entry_id = await producer.invalidate_keys("products", ["42"], reason="packaging test")
    while await cache.get("products", "42") is not None:
        assert loop.time() < deadline and not running.done(), consumer.stats.as_dict()
        await asyncio.sleep(0.05)
    await consumer.stop()
    await running
    assert consumer.stats.applied == 1, consumer.stats.as_dict()
    await producer.aclose()
    await client.aclose()
    await close_shared_pools()
    print("published", entry_id, "applied", consumer.stats.applied)


asyncio.run(main(sys.argv[1]))
'''


def test_a_project_with_its_own_contracts_publishes_and_consumes(
    installed: Installed, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory()
    project = installed.workdir / "project"
    for package in ("contracts", "producers", "consumers"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text('OWNER = "app"\n')
        (project / package / "errors.py").write_text("class Mine(Exception): ...\n")
    (project / "app.py").write_text(textwrap.dedent(APP))
    result = installed.run(installed.bin("python"), "app.py", server.url, cwd=project)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["applied", "1"]


def test_the_demo_passes_from_the_wheel_with_otel(installed: Installed) -> None:
    _pip("--python", installed.bin("python"), "install", "--quiet", f"{installed.wheel}[otel]")
    result = installed.run(
        installed.bin("cachebus"), "demo", "--seconds", "10", "--json", timeout=400
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["passed"] and verdict["lost"] == 0 and verdict["stale_after_quiescence"] == 0
    assert "PASS" in result.stderr
    assert (installed.workdir / ".demo").is_dir()  # it ran here, far from the checkout
