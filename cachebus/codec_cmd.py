"""``cachebus codec train``: build a zstd dictionary for small cache values.

Samples come from files (each file one value, or one value per line with ``--lines``) or from
a namespace in Redis (a bounded SCAN sample of its values, decoded with the cache codec). A
tenth of the samples is held out and compressed with and without the new dictionary, so the
command says what the dictionary buys before anyone deploys it with
``CacheConfig(dictionary=Dictionary.load(path))``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
import typer

from cachebus.contracts.errors import CachebusError, CodecError, ConfigError
from cachebus.contracts.keys import KeySpace
from cachebus.core import RedisSettings, ValueCodec
from cachebus.core.connection import create_sync_pool, map_redis_errors
from cachebus.core.dictionary import DEFAULT_DICTIONARY_SIZE, Dictionary
from cachebus.exits import ExitCode
from cachebus.registry_cmd import REGISTRY_OPT, load_cli_registry

__all__ = ["codec_app", "read_file_samples", "read_redis_samples"]

codec_app = typer.Typer(no_args_is_help=True, help="The cache value codec: zstd dictionaries.")


def read_file_samples(paths: Sequence[Path], *, lines: bool) -> list[bytes]:
    """Every file under ``paths`` (directories are walked) is one sample, or each line is."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"sample path {str(path)!r} does not exist")
    samples: list[bytes] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read sample {str(file)!r}: {exc}") from None
        if lines:
            samples.extend(line for line in data.splitlines() if line.strip())
        elif data:
            samples.append(data)
    return samples


def read_redis_samples(
    url: str,
    keyspace: KeySpace,
    namespace: str,
    *,
    limit: int,
    max_scan_calls: int,
    decode_with: Sequence[Dictionary] = (),
) -> tuple[list[bytes], int]:
    """Up to ``limit`` serialized values of ``namespace``: ``(samples, undecodable count)``."""
    match = keyspace.namespace_match(namespace)
    codec = ValueCodec(decode_only=tuple(decode_with))
    settings = RedisSettings.from_url(url, client_name="cachebus-codec-train")
    pool = create_sync_pool(settings)
    client = redis.Redis(connection_pool=pool)
    samples: list[bytes] = []
    skipped = 0
    try:
        for keys in _scan(client, match, max_scan_calls, settings.redacted_url):
            with map_redis_errors(f"MGET {namespace}", settings.redacted_url):
                values = client.mget(keys) if keys else []
            for raw in values:
                if not isinstance(raw, bytes):
                    continue
                try:
                    payload, _header = codec.decode_payload(raw)
                except CodecError:
                    skipped += 1
                    continue
                samples.append(payload)
                if len(samples) >= limit:
                    return samples, skipped
    finally:
        client.close()
        pool.disconnect()
    return samples, skipped


def _scan(client: Any, match: str, max_calls: int, where: str) -> Iterator[list[bytes]]:
    cursor = 0
    for _ in range(max_calls):
        with map_redis_errors(f"SCAN MATCH {match}", where):
            cursor, keys = client.scan(cursor, match=match, count=1000)
        yield list(keys)
        if int(cursor) == 0:
            return


def _ratio(samples: Sequence[bytes], codec: ValueCodec) -> float:
    raw = sum(len(s) for s in samples)
    stored = sum(len(codec.encode(s, 1, namespace="sample")) for s in samples)
    return raw / stored if stored else 0.0


@codec_app.command("train")
def train(
    out: Path = typer.Option(..., "--out", "-o", help="where to write the dictionary"),
    paths: list[Path] = typer.Argument(None, help="sample files or directories"),
    lines: bool = typer.Option(False, "--lines", help="one sample per non-empty line"),
    url: str | None = typer.Option(
        None, "--redis-url", help="sample a namespace of this Redis (the cache's)"
    ),
    old_url: str | None = typer.Option(None, "--url", hidden=True),  # deprecated: --redis-url
    namespace: str | None = typer.Option(None, "--namespace", help="namespace to sample"),
    prefix: str = typer.Option("cb", help="key prefix of the cache (KeySpace.prefix)"),
    scope: str = typer.Option("shared", help="cache scope (KeySpace.scope)"),
    sample: int = typer.Option(2000, help="at most this many values from Redis"),
    max_scan_calls: int = typer.Option(200, help="SCAN calls (COUNT 1000) at most"),
    decode_with: list[Path] = typer.Option([], help="dictionaries of values already stored"),
    size: int = typer.Option(DEFAULT_DICTIONARY_SIZE, help="dictionary size in bytes"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object last"),
    registry: Path = REGISTRY_OPT,
) -> None:
    """Train a zstd dictionary from sample values and write it to ``--out``."""
    if old_url is not None:
        typer.echo("cachebus codec train: --url is deprecated; use --redis-url", err=True)
        url = url or old_url
    keyspace = None
    if url:  # sampling a namespace needs the registry that declares it
        loaded = load_cli_registry(registry, "codec train")
        keyspace = KeySpace(prefix=prefix, scope=scope, registry=loaded)
    try:
        summary = _train(
            out, paths or [], lines, url, namespace, keyspace, sample, max_scan_calls,
            decode_with, size,
        )  # fmt: skip
    except CachebusError as exc:
        typer.echo(f"cachebus codec train: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    typer.echo(
        f"wrote {summary['out']}: dictionary {summary['dict_id']}, {summary['size']} bytes, "
        f"from {summary['samples']} samples; held-out 1 KB-class ratio "
        f"{summary['ratio_without']:.2f}x -> {summary['ratio_with']:.2f}x",
        err=as_json,
    )
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))


def _train(
    out: Path, paths: list[Path], lines: bool, url: str | None, namespace: str | None,
    keyspace: KeySpace | None, limit: int, max_scan_calls: int, decode_with: list[Path],
    size: int,
) -> dict[str, Any]:  # fmt: skip
    if bool(paths) == bool(url):
        raise ConfigError("give sample files, or --redis-url with --namespace, not both or neither")
    skipped = 0
    if url:
        if not namespace:
            raise ConfigError("--redis-url needs --namespace: which namespace's values to sample")
        assert keyspace is not None
        keyspace.namespace(namespace)
        dictionaries = [Dictionary.load(p) for p in decode_with]
        samples, skipped = read_redis_samples(
            url,
            keyspace,
            namespace,
            limit=limit,
            max_scan_calls=max_scan_calls,
            decode_with=dictionaries,
        )
    else:
        samples = read_file_samples(paths, lines=lines)
    rng = random.Random(0)
    rng.shuffle(samples)
    held = samples[: max(1, len(samples) // 10)] if len(samples) >= 20 else []
    training = samples[len(held) :]
    dictionary = Dictionary.train(training, size=size)
    dictionary.save(out)
    without = ValueCodec()
    with_dict = ValueCodec(dictionaries={None: dictionary})
    evaluated = held or training
    return {
        "out": str(out),
        "dict_id": dictionary.dict_id,
        "size": len(dictionary.data),
        "samples": len(training),
        "held_out": len(held),
        "undecodable_skipped": skipped,
        "ratio_without": round(_ratio(evaluated, without), 3),
        "ratio_with": round(_ratio(evaluated, with_dict), 3),
    }
