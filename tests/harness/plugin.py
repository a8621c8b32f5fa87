"""pytest fixtures for real Redis: every test that talks to Redis gets it from here.

Source order for ``redis_url`` (tests that need no control over the server):
``REDIS_URL`` → testcontainers when a Docker engine answers → a local ``redis-server`` →
with ``CI=true`` and none of these, the test **fails** (a CI run can never be green by skipping).

Tests that kill, pause, restart or reconfigure Redis use ``redis_server_factory``: it always
starts a private ``redis-server`` on a free port and ends it by pid at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.testing import FaultProxy, RedisServer, ServerOptions
from cachebus.testing.server import find_redis_server
from tests.harness.registry import REGISTRY

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# ---- leaks fail the test that leaked -------------------------------------------------------
# An unclosed client, transport or file warns from its finaliser, which runs whenever the
# garbage collector happens to reach it: in a later test, which then fails for someone else's
# leak. Collecting at the end of every test's teardown (after its fixtures closed what they
# own) makes the finaliser run while the culprit is still the current test; pytest's
# unraisable-exception check, which runs last in the same phase, then fails that test.
def pytest_collection_finish(session: pytest.Session) -> None:
    # What is alive now (modules, collected items) lives all session: keeping it out of every
    # collection makes the per-test collection cheap (~2 ms instead of ~25 ms).
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A failure's traceback keeps the test's locals (clients, processes, files) alive until
    # pytest drops it, after this test: their finalisers then blame the next test. Once the
    # report is written, free them, so the teardown collection below names this test.
    if call.excinfo is not None and not item.config.getoption("usepdb", False):
        for frame, _ in traceback.walk_tb(call.excinfo.tb):
            with contextlib.suppress(RuntimeError):  # a frame still running keeps its locals
                frame.clear()
                # The traceback's rendering materialised f_locals; clear() leaves that dict.
                frame.f_locals.clear()
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield  # fixtures are finalised here
    gc.collect()
    from _pytest.unraisableexception import collect_unraisable

    collect_unraisable(item.config)


# ---- a timeout that diagnoses ---------------------------------------------------------------
# pytest-timeout's dump shows threads, and an asyncio test's only thread is parked in select():
# it says nothing about what the test waited for. Shortly before the bound, print every
# unfinished task with the line it waits on, into the test's captured output.
def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    return float(value or 0)


def _dump_tasks(nodeid: str, timeout: float) -> None:
    tasks = [t for t in list(getattr(asyncio.tasks, "_all_tasks", ())) if not t.done()]
    lines = [
        f"\n=== {nodeid}: close to its {timeout:.0f} s timeout; {len(tasks)} tasks pending ==="
    ]
    for task in tasks:
        lines.append(f"--- {task!r}")
        for frame in task.get_stack(limit=8):
            lines.extend(traceback.format_stack(frame, limit=1))
    print("\n".join(lines), file=sys.stderr, flush=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    timeout = _timeout_of(item)
    timer = None
    if timeout > 0:
        timer = threading.Timer(
            max(timeout - 10.0, timeout * 0.9), _dump_tasks, (item.nodeid, timeout)
        )
        timer.daemon = True
        timer.start()
    try:
        return (yield)
    finally:
        if timer is not None:
            timer.cancel()


def no_redis(reason: str) -> None:
    """Fail in CI, skip elsewhere: CI must never pass with Redis tests skipped."""
    if IN_CI:
        pytest.fail(f"CI=true and no Redis is available: {reason}", pytrace=False)
    pytest.skip(reason)


def _docker_answers() -> bool:
    """Ask the Docker engine's ``/_ping`` directly: the docker SDK leaks its socket on failure."""
    if os.environ.get("CACHEBUS_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host[len("unix://") :]
        elif host.startswith("tcp://"):
            hostname, _, port = host[len("tcp://") :].partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (hostname, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096)
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]
    except OSError:
        return False


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=None)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for tests that do not need to control the server (isolate by key prefix)."""
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        if not _ping(env_url):
            no_redis(f"REDIS_URL={env_url!r} does not answer PING")
        yield env_url
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.0") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    if find_redis_server() is None:
        no_redis("no REDIS_URL, no Docker engine and no redis-server binary")
    server = RedisServer(ServerOptions()).start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, retry=None)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A unique key prefix per test: isolation on a shared server without FLUSHALL."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keyspace(prefix: str) -> KeySpace:
    return KeySpace(prefix=prefix, scope="svc", registry=REGISTRY)


@pytest.fixture
def stream_keys(prefix: str) -> StreamKeys:
    return StreamKeys(prefix=prefix)


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers: ``make(ServerOptions(...), **kwargs)``; ended by pid after."""
    if find_redis_server() is None:
        no_redis("these tests control their own redis-server and none is installed")
    servers: list[RedisServer] = []

    def make(options: ServerOptions | None = None, **kwargs: Any) -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(options, directory=directory, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """One private, controllable redis-server without persistence."""
    return redis_server_factory()


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[[RedisServer], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(server: RedisServer) -> FaultProxy:
        proxy = FaultProxy(server.host, server.port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# ---- PostgreSQL with logical decoding (the commit-log relay) ---------------------------------
def _postgres_bindir_or_fail() -> None:
    from cachebus.testing.postgres import find_postgres_bindir

    if find_postgres_bindir() is None:
        reason = "no PostgreSQL binaries (initdb, postgres; pg_config --bindir)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def logical_postgres() -> Iterator[Any]:
    """A PostgreSQL (wal_level=logical) shared by the session: tests isolate by database."""
    _postgres_bindir_or_fail()
    from cachebus.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_server_factory() -> Iterator[Callable[..., Any]]:
    """Private PostgreSQL servers a test may stop, crash or reconfigure; ended by pid after."""
    _postgres_bindir_or_fail()
    from cachebus.testing.postgres import PostgresServer

    servers: list[PostgresServer] = []

    def make(settings: dict[str, str] | None = None, **kwargs: Any) -> PostgresServer:
        server = PostgresServer(settings, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()
