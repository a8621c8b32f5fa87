"""``cachebus bench startup``: how fast the command line answers and the sidecar consumes.

Each round runs, in turn (so a busy moment of the machine touches all alike):

* ``python -c pass``: the interpreter alone, the baseline;
* ``cachebus --help`` and ``cachebus version``: exec to exit;
* ``cachebus consume``: exec to **consume ready** (its settings parsed and checked, the
  benchmarks' registry file loaded), the moment the server receives the sidecar's first
  ``XREADGROUP`` (the MONITOR timestamp of that command on a scratch redis-server, on the
  same clock as the wall time taken just before the exec). Until then a restarted member holds
  nothing; the sidecar is then stopped with SIGTERM.

Medians of the rounds are reported, with the budgets (0.25 s for help and version, 0.4 s to
consume ready). The package's bytecode is compiled first, as pip does when it installs a wheel:
a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module at every
start, a cost no installed sidecar pays.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from cachebus.bench import bench_app
from cachebus.bench._report import emit
from cachebus.bench.registry import bench_registry_path
from cachebus.contracts.errors import ConfigError
from cachebus.testing import RedisServer, ServerOptions

__all__ = ["BUDGETS", "startup"]

#: Seconds each measure should stay within on the project's machine.
BUDGETS = {"help_s": 0.25, "version_s": 0.25, "consume_ready_s": 0.4}
_STOP_TIMEOUT = 10.0


def _compile_bytecode() -> bool:
    """Compile every module of the installed package (through its links); True when all did."""
    import cachebus

    done = True
    for root, dirs, files in os.walk(Path(cachebus.__file__).parent, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                done &= bool(compileall.compile_file(os.path.join(root, name), quiet=2))
    return done


def _cachebus() -> list[str]:
    script = Path(sys.executable).parent / "cachebus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cachebus.cli"]


def _exec_to_exit(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise ConfigError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return elapsed


@contextlib.contextmanager
def _monitor(port: int) -> Iterator[Callable[[str, float], float]]:
    """``wait(group, deadline)``: the server time of the first XREADGROUP of ``group``.

    A plain socket, so every wait is bounded by ``select``; MONITOR lines look like
    ``+1700000000.123456 [0 127.0.0.1:5555] "XREADGROUP" "GROUP" "bench0" ...``.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"MONITOR\r\n")
    buffer = b""

    def wait(group: str, deadline: float) -> float:
        nonlocal buffer
        needle = f'"group" "{group}" '.encode()
        while True:
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                if b'"xreadgroup" ' in line.lower() and needle in line.lower():
                    return float(line[1:].split(b" ", 1)[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                raise ConfigError(f"no XREADGROUP of group {group} reached Redis in time")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConfigError("the MONITOR connection closed")
            buffer += chunk

    try:
        yield wait
    finally:
        sock.close()


def _consume_ready(url: str, group: str, wait: Callable[[str, float], float]) -> float:
    argv = [*_cachebus(), "consume", "--redis-url", url, "--service", group,
            "--registry", str(bench_registry_path()), "--namespaces", "items",
            "--health-port", "0", "--log-level", "WARNING"]  # fmt: skip
    started = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = wait(group, time.monotonic() + 30)
    except ConfigError as exc:
        proc.kill()
        _, err = proc.communicate(timeout=_STOP_TIMEOUT)
        raise ConfigError(f"{exc}; the sidecar said: {err[-1000:]!r}") from None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=_STOP_TIMEOUT)
    return seen - started


def run(runs: int) -> dict[str, Any]:
    compiled = _compile_bytecode()
    samples: dict[str, list[float]] = {"python_s": [], **{name: [] for name in BUDGETS}}
    env_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # the help renders the same width in every round
    server = RedisServer(ServerOptions()).start()
    try:
        with _monitor(server.port) as wait:
            for round_ in range(runs):
                samples["python_s"].append(_exec_to_exit([sys.executable, "-c", "pass"]))
                samples["help_s"].append(_exec_to_exit([*_cachebus(), "--help"]))
                samples["version_s"].append(_exec_to_exit([*_cachebus(), "version"]))
                samples["consume_ready_s"].append(
                    _consume_ready(server.url, f"bench{round_}", wait)
                )
    finally:
        server.close()
        if env_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = env_columns
    summary: dict[str, Any] = {
        name: round(statistics.median(values), 4) for name, values in samples.items()
    }
    summary["min"] = {name: round(min(values), 4) for name, values in samples.items()}
    summary["runs"] = runs
    summary["budgets"] = BUDGETS
    summary["within_budget"] = all(summary[name] <= limit for name, limit in BUDGETS.items())
    summary["load_1min"] = round(os.getloadavg()[0], 2)
    summary["bytecode_compiled"] = compiled
    return summary


@bench_app.command("startup")
def startup(
    runs: int = typer.Option(10, min=1, max=100, help="Rounds; medians are reported."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """cachebus --help, version and the consume sidecar's first read, beside python -c pass."""
    summary = run(runs)
    python = summary["python_s"]
    rows = [["python -c pass", python, summary["min"]["python_s"], "-", 0.0]]
    for name, label in (
        ("help_s", "cachebus --help"),
        ("version_s", "cachebus version"),
        ("consume_ready_s", "cachebus consume (ready)"),
    ):
        rows.append(
            [label, summary[name], summary["min"][name], BUDGETS[name], summary[name] - python]
        )
    emit(
        "startup",
        ["command", "median s", "min s", "budget s", "over python s"],
        rows,
        summary,
        as_json=as_json,
        notes=[
            "ready: exec to the server receiving the sidecar's first XREADGROUP (MONITOR)",
            f"bytecode compiled first, as pip does at install: {summary['bytecode_compiled']}",
            f"{runs} rounds; 1-minute load average {summary['load_1min']} "
            f"on {os.cpu_count()} cores; within budget: {summary['within_budget']}",
        ],
    )
