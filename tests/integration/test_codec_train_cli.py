"""``cachebus codec train``: dictionaries from files or from a namespace in Redis."""

from __future__ import annotations

import json
import random
from pathlib import Path

import redis
from typer.testing import CliRunner

from cachebus.bench._samples import sized_json
from cachebus.cli import app
from cachebus.contracts.keys import KeySpace
from cachebus.core import SyncCache, ValueCodec
from cachebus.core.dictionary import Dictionary
from tests.harness.registry import REGISTRY_FILE

runner = CliRunner()


def _jsonl(path: Path, count: int, seed: int) -> Path:
    lines = [sized_json("position", 1024, random.Random(seed + i)) for i in range(count)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_training_from_a_json_lines_file_writes_a_dictionary_that_helps(tmp_path: Path) -> None:
    samples = _jsonl(tmp_path / "positions.jsonl", 400, 0)
    out = tmp_path / "positions.zdict"
    result = runner.invoke(
        app, ["codec", "train", "--out", str(out), "--lines", "--json", str(samples)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["samples"] == 360 and summary["held_out"] == 40
    assert summary["ratio_with"] > 2 * summary["ratio_without"]
    assert Dictionary.load(out).dict_id == summary["dict_id"]


def test_training_from_a_redis_namespace_reads_values_through_the_codec(
    tmp_path: Path, redis_url: str, keyspace: KeySpace
) -> None:
    client = redis.Redis.from_url(redis_url)
    cache = SyncCache(client, keyspace)
    values = {str(i): sized_json("market", 1024, random.Random(i)) for i in range(300)}
    cache.set_many("market_by_condition", values)  # stored zstd-compressed, with headers
    client.close()
    out = tmp_path / "markets.zdict"
    result = runner.invoke(
        app,
        ["codec", "train", "--out", str(out), "--redis-url", redis_url, "--namespace",
         "market_by_condition", "--prefix", keyspace.prefix, "--scope", keyspace.scope, "--json",
             "--registry", str(REGISTRY_FILE)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["samples"] + summary["held_out"] == 300
    dictionary = Dictionary.load(out)
    codec = ValueCodec(dictionaries={None: dictionary})
    assert codec.decode(codec.encode(values["1"], 1)).value == values["1"]


def test_training_without_samples_says_what_to_give(tmp_path: Path) -> None:
    result = runner.invoke(app, ["codec", "train", "--out", str(tmp_path / "x.zdict")])
    assert result.exit_code == 2
    assert "give sample files, or --redis-url with --namespace" in result.output


def test_training_from_too_few_samples_fails_clearly(tmp_path: Path) -> None:
    samples = _jsonl(tmp_path / "few.jsonl", 10, 0)
    result = runner.invoke(
        app, ["codec", "train", "--out", str(tmp_path / "x.zdict"), "--lines", str(samples)]
    )
    assert result.exit_code == 2
    assert "at least 50 non-empty samples" in result.output
    assert not (tmp_path / "x.zdict").exists()


def test_an_unreachable_redis_is_reported_not_raised(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["codec", "train", "--out", str(tmp_path / "x.zdict"), "--redis-url", "redis://127.0.0.1:1/0",
         "--namespace", "market", "--registry", str(REGISTRY_FILE)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "is Redis up and reachable" in result.output


def test_sampling_redis_needs_a_registry_declaring_the_namespace(tmp_path: Path) -> None:
    base = [
        "codec",
        "train",
        "--out",
        str(tmp_path / "x.zdict"),
        "--redis-url",
        "redis://127.0.0.1:1/0",
    ]
    missing = runner.invoke(app, [*base, "--namespace", "market"], env={"CACHEBUS_REGISTRY": ""})
    assert missing.exit_code == 2 and "no registry" in missing.output
    unknown = runner.invoke(app, [*base, "--namespace", "orders", "--registry", str(REGISTRY_FILE)])
    assert unknown.exit_code == 2 and "'orders' is not registered" in unknown.output
