"""The ``--json`` grammar: every command prints ONE JSON object, on the last line of stdout,
however many things it reports (``publish`` of 1,001 ids appends two entries: one object).

``tail --json`` is the exception by nature: it follows a stream without end, so it prints one
object per event as it arrives (JSON Lines; tests/obs/test_tail_and_schema_cli.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio
import typer.main
from typer.testing import CliRunner

from cachebus.cli import COMMANDS, app
from cachebus.consumers import Consumer, ConsumerConfig
from cachebus.contracts.codec import encode_event
from cachebus.contracts.keys import StreamKeys
from cachebus.exits import ExitCode
from tests.consumer.helpers import NS, Recorder, keys_event
from tests.harness.registry import REGISTRY_FILE


@dataclass
class World:
    """A stream with events, a group ``svc`` with one dead letter, an outbox database."""

    url: str
    prefix: str
    dead_letter: str
    database: str

    def redis(self) -> list[str]:
        return ["--redis-url", self.url, "--prefix", self.prefix]


def _consume(url: str, keys: StreamKeys, recorder: Recorder) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        config = ConsumerConfig(
            stream="inval", group="svc", consumer="svc-1", namespaces=NS, block_ms=100,
            max_deliveries=1, backoff_base_s=0.01,
        )  # fmt: skip
        await Consumer(client, config, [recorder.sink()], keys=keys).run(until_idle=True)
        await client.aclose()

    asyncio.run(main())


@pytest.fixture
def world(
    redis_url: str, redis_client: redis.Redis, prefix: str, stream_keys: StreamKeys, tmp_path: Path
) -> World:
    refused = keys_event("prices", "p1")
    recorder = Recorder(fail_on={refused.event_id})
    _consume(redis_url, stream_keys, recorder)  # creates the group
    redis_client.xadd(stream_keys.stream("inval"), encode_event(refused))  # type: ignore[arg-type]
    _consume(redis_url, stream_keys, recorder)  # dead-letters it
    (letter,) = redis_client.xrange(stream_keys.dead_letter("inval", "svc"))
    database = f"sqlite:///{tmp_path / 'outbox.db'}"
    created = CliRunner().invoke(app, ["outbox", "init", "--database", database])
    assert created.exit_code == 0, created.output
    return World(redis_url, prefix, letter[0].decode(), database)


REG = ["--registry", str(REGISTRY_FILE)]
MANY_IDS = [f"--key=1:{i}" for i in range(1001)]  # two entries: 1,000 ids at most per event
#: command path -> its arguments, given the world; all with --json.
CASES: dict[str, Callable[[World], list[str]]] = {
    "publish": lambda w: ["publish", "positions", *MANY_IDS, "-r", "t", *w.redis(), *REG],
    "publish --dry-run": lambda w: [
        "publish",
        "positions",
        *MANY_IDS,
        "-r",
        "t",
        "--dry-run",
        *w.redis(),
        *REG,
    ],
    "status": lambda w: ["status", *w.redis(), *REG],
    "doctor": lambda w: ["doctor", *w.redis(), "--service", "svc", *REG],
    "dlq list": lambda w: ["dlq", "list", "--service", "svc", *w.redis()],
    "dlq show": lambda w: ["dlq", "show", w.dead_letter, "--service", "svc", *w.redis()],
    "dlq replay": lambda w: ["dlq", "replay", "--all", "--dry-run", "-s", "svc", *w.redis()],
    "dlq purge": lambda w: ["dlq", "purge", "--all", "--yes", "--service", "svc", *w.redis()],
    "registry show": lambda w: ["registry", "show", *REG],
    "registry diff": lambda w: ["registry", "diff", str(REGISTRY_FILE), str(REGISTRY_FILE)],
    "outbox status": lambda w: ["outbox", "status", "--database", w.database],
}
#: Commands whose --json is tested where they are (each parses the last line), because a run
#: of them takes seconds to minutes: the grammar is theirs through bench/_report.emit.
ELSEWHERE = {
    "check": "tests/obs/test_cli_grammar.py, tests/consistency/test_checker.py",
    "demo": "tests/demo/test_demo.py",
    "codec train": "tests/integration/test_codec_train_cli.py",
    "bench": "tests/integration/test_*_bench_smoke.py (every bench ends through emit)",
    "tail": "JSON Lines by nature: tests/obs/test_tail_and_schema_cli.py",
}


@pytest.mark.parametrize("case", CASES)
def test_json_is_one_object_on_the_last_line(case: str, world: World) -> None:
    result = CliRunner().invoke(app, [*CASES[case](world), "--json"])
    assert result.exit_code in (ExitCode.OK, ExitCode.FINDING), result.output
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    document = json.loads(lines[-1])
    assert isinstance(document, dict), lines[-1]
    assert all(not line.strip().startswith(("{", "[", '"')) for line in lines[:-1]), lines[:3]
    if case.startswith("publish"):
        entries = document["published" if case == "publish" else "would_publish"]
        assert document["ok"] is True and len(entries) == 2
        assert sum(len(e["keys"]) for e in entries) == len(MANY_IDS)


def _json_commands() -> set[str]:
    group = typer.main.get_command(app)
    found: set[str] = set()
    for name in COMMANDS:
        real = group.load(name)  # type: ignore[attr-defined]
        subs = getattr(real, "commands", None) or {None: real}
        for sub, command in subs.items():
            if any("--json" in getattr(p, "opts", ()) for p in command.params):
                found.add(f"{name} {sub}" if sub else name)
    return found


def test_every_command_with_json_is_covered() -> None:
    covered = {c.removesuffix(" --dry-run") for c in CASES}
    unchecked = _json_commands() - covered
    missing = {c for c in unchecked if c not in ELSEWHERE and c.split()[0] not in ELSEWHERE}
    assert not missing, f"--json commands not checked for one object on the last line: {missing}"
