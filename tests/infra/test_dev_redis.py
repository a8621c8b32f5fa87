"""The dev instances: started from the local binary, used through their env files, stopped
by pid, and never a process that is not theirs."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from cachebus.contracts.errors import ConfigError
from cachebus.devredis import DevRedis, running, start, stop
from cachebus.producers import SyncProducer
from tests.harness.registry import REGISTRY
from tests.infra.conftest import dev_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "dev-redis.sh"


def _env(pair: DevRedis, user: str) -> dict[str, str]:
    path = pair.config.run_dir / "env" / f"{user}.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_env_files_connect_each_user_to_both_instances(dev_pair: DevRedis) -> None:
    bot = _env(dev_pair, "cachebus-svc-bot")
    for url in (bot["CACHEBUS_REDIS_URL"], bot["CACHEBUS_CACHE_URL"]):
        client = redis.Redis.from_url(url, retry=None)
        assert client.ping()
        client.set("cb:bot:prices:p1", "1")
        client.close()
    producer_url = _env(dev_pair, "cachebus-producer")["CACHEBUS_REDIS_URL"]
    with SyncProducer.from_url(producer_url, producer_name="demo", registry=REGISTRY) as producer:
        assert producer.invalidate_keys("prices", ["p1"])
    assert stat.S_IMODE((dev_pair.config.run_dir / "secrets.env").stat().st_mode) == 0o600


def test_start_is_idempotent_and_stop_ends_both_servers_by_pid(tmp_path: Path) -> None:
    config = dev_config(tmp_path / "run")
    pair = start(config)
    try:
        pids = sorted(inst.pid for inst in pair.instances)
        assert sorted(inst.pid for inst in running(config.run_dir)) == pids
        again = start(config)  # already running on these ports: reused, not restarted
        assert sorted(inst.pid for inst in again.instances) == pids
        assert again.passwords == pair.passwords
    finally:
        stopped = stop(config.run_dir)
    assert sorted(inst.pid for inst in stopped) == pids
    assert all(_gone(pid) for pid in pids)
    assert running(config.run_dir) == []
    assert not (config.run_dir / "stream.pid").exists()


def test_stop_never_signals_a_process_that_is_not_the_recorded_redis(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "stream.pid").write_text(f"{bystander.pid} 6380\n")  # a stale pid file
        assert stop(run_dir) == []
        assert bystander.poll() is None  # still alive
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait(timeout=10)


def test_a_taken_port_fails_the_start_clearly_and_leaves_nothing_running(tmp_path: Path) -> None:
    config = dev_config(tmp_path / "run")
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", config.cache_port))
    blocker.listen(1)
    try:
        with pytest.raises(ConfigError, match="cache-port"):
            start(config)
    finally:
        blocker.close()
    assert running(config.run_dir) == []


def test_the_shell_script_starts_reports_and_stops_without_printing_a_password(
    tmp_path: Path,
) -> None:
    config = dev_config(tmp_path / "run")
    where = ["--dir", str(config.run_dir)]
    ports = ["--stream-port", str(config.stream_port), "--cache-port", str(config.cache_port)]

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)

    outputs = []
    try:
        started = script("start", *where, *ports)
        assert started.returncode == 0, started.stderr
        status = script("status", *where)
        assert status.returncode == 0 and status.stdout.count("running") == 2
        outputs += [started.stdout, started.stderr, status.stdout, status.stderr]
    finally:
        stopped = script("stop", *where)
    assert stopped.returncode == 0 and stopped.stdout.count("stopped") == 2
    assert script("status", *where).returncode == 1
    secrets = (config.run_dir / "secrets.env").read_text().splitlines()[1:]
    passwords = [line.split("=", 1)[1] for line in secrets]
    assert passwords and not [p for p in passwords if p in "".join(outputs)]
