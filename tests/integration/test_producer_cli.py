"""``cachebus publish``: ops invalidate from the command line."""

from __future__ import annotations

import json
import re
import time

import redis
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.contracts import StreamKeys, decode_fields
from cachebus.testing.server import free_port
from tests.harness.registry import REGISTRY_FILE

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["publish", *args, "--registry", str(REGISTRY_FILE)])
    return result.exit_code, result.stdout, result.stderr


def test_publishing_keys_appends_one_event_and_prints_its_ids(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    code, out, err = run(
        "positions", "--key", "42:all", "-k", "42:7", "--reason", "manual fix",
        "--redis-url", redis_url, "--prefix", prefix, "--json",
    )  # fmt: skip
    assert code == 0, err
    (line,) = out.splitlines()  # one object, however many entries
    report = json.loads(line)
    assert report["ok"] is True and report["namespace"] == "positions"
    (printed,) = report["published"]
    ((entry_id, fields),) = redis_client.xrange(StreamKeys(prefix).stream("inval"))
    event = decode_fields(fields).event
    assert printed["entry_id"] == entry_id.decode()
    assert printed["event_id"] == event.event_id
    assert event.keys == ("42:all", "42:7")  # type: ignore[union-attr]
    assert (event.producer, event.reason) == ("ops-cli", "manual fix")


def test_a_flush_needs_confirmation(redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    code, _, err = run(
        "prices", "--flush", "--reason", "x", "--redis-url", redis_url, "--prefix", prefix
    )
    assert code == 2
    assert "--yes" in err
    code, out, _ = run(
        "prices", "--flush", "--yes", "--reason", "feed restart", "--redis-url", redis_url,
        "--prefix", prefix,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("published flush prices entry=")
    assert redis_client.xlen(StreamKeys(prefix).stream("inval")) == 1


def test_bad_requests_say_what_is_wrong_and_send_nothing(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    cases = [
        (["api_positions", "--key", "1"], "namespace.unknown"),
        (["positions", "--pattern", "*"], "use --flush --yes instead"),
        (["positions", "--key", "1", "--pattern", "1:*"], "exactly one of"),
        (["positions"], "exactly one of"),
    ]
    for args, expected in cases:
        code, _, err = run(*args, "--reason", "x", "--redis-url", redis_url, "--prefix", prefix)
        assert code == 2, args
        assert expected in err, (args, err)
    assert redis_client.exists(StreamKeys(prefix).stream("inval")) == 0


def test_a_dry_run_prints_the_entry_without_sending(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    code, out, _ = run(
        "market_lists", "--pattern", "top:*", "--reason", "rebuilt", "--dry-run",
        "--redis-url", redis_url, "--prefix", prefix,
    )  # fmt: skip
    assert code == 0
    assert out.startswith(f"XADD {prefix}:stream:inval * __data__ {{")
    assert redis_client.exists(StreamKeys(prefix).stream("inval")) == 0


def test_a_refused_connection_appended_nothing_and_says_after_how_long() -> None:
    # Given a port nobody listens on: every connect is refused, no XADD can have left
    started = time.monotonic()
    code, _, err = run(
        "prices", "--key", "m1", "--reason", "x", "--timeout", "0.2",
        "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
    )  # fmt: skip
    took = time.monotonic() - started
    # Then the publish fails with exit 1, says nothing was appended, and the time it took
    assert code == 1
    assert "the invalidation was not appended" in err, err
    assert "may have been" not in err
    reported = float(re.search(r"failed after (\d+\.\d)s", err).group(1))  # type: ignore[union-attr]
    assert reported <= took + 0.05
    # the time reported is the time it took, not the worst-case bound
    bound = float(re.search(r"the bound is (\d+\.\d)s", err).group(1))  # type: ignore[union-attr]
    assert reported < bound
    # And with --json the outcome is the last line too, for a script that reads only that
    code, out, _ = run(
        "prices", "--key", "m1", "--reason", "x", "--timeout", "0.2", "--json",
        "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
    )  # fmt: skip
    report = json.loads(out.splitlines()[-1])
    assert code == 1
    assert (report["ok"], report["ambiguous"], report["published"]) == (False, False, [])
    assert "Connection refused" in report["error"]


def test_url_is_a_deprecated_alias_of_redis_url(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    code, _, err = run(
        "prices", "--key", "m1", "--reason", "x", "--url", redis_url, "--prefix", prefix
    )
    assert code == 0, err
    assert "--url is deprecated; use --redis-url" in err
    assert redis_client.xlen(StreamKeys(prefix).stream("inval")) == 1
    help_text = runner.invoke(app, ["publish", "--help"]).stdout
    assert "--redis-url URL" in help_text and "--url" not in help_text.replace("--redis-url", "")
