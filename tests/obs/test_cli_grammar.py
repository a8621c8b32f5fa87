"""One grammar for every command: the same flags, ``-h`` and ``--version``, plain help, exit
codes from :class:`cachebus.exits.ExitCode`, settings errors named as the user wrote them,
unknown names refused."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import typer.main
from typer.testing import CliRunner

from cachebus.cli import COMMANDS, app
from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from cachebus.exits import ExitCode
from cachebus.testing import eventually
from tests.consumer.helpers import keys_event

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _all_commands() -> list[list[str]]:
    """Every command path: ``["publish"]``, ``["dlq", "list"]``..."""
    group = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name in COMMANDS:
        real = group.load(name)  # type: ignore[attr-defined]
        subs = getattr(real, "commands", None)
        paths += [[name, sub] for sub in subs] if subs else [[name]]
    return paths


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_every_help_is_plain_and_answers_to_dash_h(path: list[str]) -> None:
    long = runner.invoke(app, [*path, "--help"])
    short = runner.invoke(app, [*path, "-h"])
    assert long.exit_code == short.exit_code == 0, long.output
    assert long.stdout == short.stdout
    text = long.stdout
    assert not re.search(r"<[a-z_\[\], ]+>", text), text  # no <bool> <list[str]> metavars
    assert "`" not in text, text  # no markup leaking from docstrings
    assert "[/" not in text and "[bold" not in text, text


def test_the_same_things_have_the_same_flags() -> None:
    helps = {" ".join(p): runner.invoke(app, [*p, "--help"]).stdout for p in _all_commands()}
    for command in ("publish", "status", "doctor", "tail", "dlq list", "dlq replay"):
        assert "--redis-url URL" in helps[command], command
    for command in ("publish", "status", "doctor", "registry show"):
        assert "--registry PATH" in helps[command], command
    for command in ("doctor", "dlq list", "dlq show", "dlq purge"):
        assert "--service" in helps[command], command
    assert "--url" not in helps["publish"].replace("--redis-url", "")  # hidden, deprecated


def test_version_flag_and_command_agree() -> None:
    flag = runner.invoke(app, ["--version"])
    command = runner.invoke(app, ["version"])
    assert flag.exit_code == command.exit_code == 0
    assert flag.stdout == command.stdout and flag.stdout.strip()


def test_an_invalid_environment_value_names_its_variable(redis_url: str) -> None:
    result = runner.invoke(
        app, ["status", "--redis-url", redis_url], env={"CACHEBUS_READ_COUNT": "abc"}
    )
    assert result.exit_code == ExitCode.USAGE
    assert "CACHEBUS_READ_COUNT=abc" in result.stderr
    assert "integer" in result.stderr
    assert "pydantic" not in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_variable_is_a_warning_naming_the_closest_known_one(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    redis_client.xadd(stream_keys.stream("inval"), encode_event(keys_event("prices", "1")))  # type: ignore[arg-type]
    env = {
        "CACHEBUS_REDIS_ULR": "redis://typo:6379/0",  # the typo: silently ignored before
        "CACHEBUS_PASSWORD_CACHEBUS_OPS": "x",  # written by `acl render`: known
        "CACHEBUS_OUTBOX_TABLE": "t",  # read by the outbox commands: known
    }
    result = runner.invoke(app, ["status", "--redis-url", redis_url, "--prefix", prefix], env=env)
    # a warning, not an error: other tools may share the prefix
    assert result.exit_code == ExitCode.OK, result.output
    (warning,) = result.stderr.splitlines()
    assert warning == (
        "cachebus status: warning: CACHEBUS_REDIS_ULR is not a cachebus setting, ignored; "
        "did you mean CACHEBUS_REDIS_URL?"
    )
    clean = runner.invoke(app, ["status", "--redis-url", redis_url, "--prefix", prefix])
    assert clean.exit_code == ExitCode.OK and clean.stderr == ""
    # the sidecar says it through its log (refused here by a bad port, before any connection)
    consume = subprocess.run(
        [sys.executable, "-m", "cachebus.cli", "consume", "--service", "web", "--namespaces",
         "prices", "--health-port", "70000", "--registry", str(ROOT / "tests" / "registry.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert consume.returncode == ExitCode.USAGE, consume.stderr
    assert "WARNING cachebus.cli: CACHEBUS_REDIS_ULR is not a cachebus setting" in consume.stderr


def test_an_invalid_flag_value_names_its_flag() -> None:
    result = runner.invoke(
        app, ["consume", "--service", "web", "--namespaces", "prices", "--health-port", "70000"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--health-port 70000: Input should be less than or equal to 65535" in result.stderr


def test_an_unknown_group_is_an_error_naming_the_known_ones(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys
) -> None:
    stream = stream_keys.stream("inval")
    redis_client.xadd(stream, encode_event(keys_event("prices", "1")))  # type: ignore[arg-type]
    redis_client.xgroup_create(stream, "web", id="0")
    result = runner.invoke(
        app, ["dlq", "list", "-g", "nosuch", "--redis-url", redis_url, "--prefix", prefix]
    )
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""  # no empty table
    assert "no consumer group 'nosuch'" in result.stderr and "groups: web" in result.stderr
    known = runner.invoke(
        app, ["dlq", "list", "--service", "web", "--redis-url", redis_url, "--prefix", prefix]
    )
    assert known.exit_code == ExitCode.OK, known.output


def test_a_malformed_acl_user_is_a_usage_error_before_connecting() -> None:
    # a port nobody listens on: the option is refused before any connection is tried
    result = runner.invoke(
        app, ["doctor", "--redis-url", "redis://127.0.0.1:1/0", "--acl-user", "bogus"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--acl-user 'bogus' is not role:name" in result.stderr


def test_acl_render_for_services_not_in_the_default_layout() -> None:
    result = runner.invoke(app, ["acl", "render", "--services", "web"])
    assert result.exit_code == ExitCode.OK, result.output
    assert "user cachebus-svc-web " in result.stdout
    assert "workers" not in result.stdout
    assert "no service may trim the stream" in result.stderr
    trimming = runner.invoke(app, ["acl", "render", "--services", "web", "--retention", "web"])
    assert trimming.exit_code == ExitCode.OK
    assert "+xtrim" in trimming.stdout


def test_ctrl_c_exits_130(redis_url: str, redis_client: redis.Redis, prefix: str) -> None:
    # Given `cachebus tail` following the stream (bounded: it ends by itself after 60 s)
    redis_client.xadd(StreamKeys(prefix).stream("inval"), {"f": "v"})
    process = subprocess.Popen(
        [sys.executable, "-m", "cachebus.cli", "tail", "--redis-url", redis_url,
         "--prefix", prefix, "--seconds", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    key = StreamKeys(prefix).stream("inval")
    try:

        def reading() -> bool:  # its XREAD on this test's stream is blocked in Redis
            return any(
                c.get("name") == "cachebus-ops" and c.get("cmd") == "xread"
                for c in redis_client.client_list()
            )

        asyncio.run(eventually(reading, within=20, what=f"cachebus tail reading {key}"))
        # When it is interrupted
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"cachebus tail ignored SIGINT; its stderr:\n{err}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Then it exits 130, without a traceback
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err


def test_check_shows_its_progress_on_a_terminal_and_json_stays_the_last_line() -> None:
    # stderr is a terminal (a pty), stdout a pipe: the bar goes to one, the JSON to the other
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cachebus.cli", "check", "--duration", "1", "--keys", "20",
             "--faults", "none", "--consumer", "inprocess", "--json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal, text=True,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:  # read the terminal until the process closes it
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed it
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == ExitCode.OK, shown.decode(errors="replace")[-2000:]
    text = shown.decode(errors="replace")
    for phase in ("starting Redis and the consumer", "writers, readers and faults"):
        assert phase in text, text[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["passed"] is True


def test_tail_of_a_stream_that_does_not_exist_is_an_error(redis_url: str, prefix: str) -> None:
    result = runner.invoke(
        app, ["tail", "--redis-url", redis_url, "--prefix", prefix, "--stream", "nosuch"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert f"no stream {prefix}:stream:nosuch" in result.stderr
