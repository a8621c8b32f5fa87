"""``cachebus publish``: invalidate from the command line (ops use).

The namespace must be declared in the registry file (``--registry`` / ``CACHEBUS_REGISTRY``,
or a ``cachebus.toml`` here), and every ``--key`` must have the shape of its key template.
Examples, with the demo's registry::

    cachebus publish positions --key 42:all --reason "manual fix of user 42"
    cachebus publish market_lists --pattern 'top:*' --reason "listing rebuilt"
    cachebus publish prices --flush --yes --reason "feed restarted"
    cachebus publish market --key m1:summary --key m1:detail --reason x --dry-run

Exit codes (:class:`cachebus.exits.ExitCode`): 0 published, 1 the publish failed (Redis
unreachable or refused: nothing or maybe something was appended, the message says which, and
after how long), 2 the request itself is wrong. ``--url`` is the deprecated spelling of
``--redis-url``. ``--json`` prints one object on the last line, whatever the outcome:
``{"ok": true, "published": [entries...], ...}`` or ``{"ok": false, "ambiguous": ...}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from cachebus.contracts.codec import FIELD, encode_payload
from cachebus.contracts.errors import ConfigError, ContractError, PublishError
from cachebus.contracts.factory import EventFactory, split_ids
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.registry import Registry
from cachebus.core.connection import RedisSettings
from cachebus.exits import ExitCode
from cachebus.ops._common import PREFIX_OPT, REDIS_URL_OPT, STREAM_OPT, load_settings
from cachebus.producers import SyncProducer, publish_bound
from cachebus.producers._routing import Router
from cachebus.registry_cmd import REGISTRY_OPT, load_cli_registry

__all__ = ["publish"]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"cachebus publish: {message}", err=True)
    return typer.Exit(code)


def _print_json(document: dict[str, Any]) -> None:
    """The ``--json`` grammar: one object on the last line, however many entries."""
    typer.echo(json.dumps(document, sort_keys=True))


def _payloads(
    factory: EventFactory, namespace: str, keys: list[str], pattern: str | None, reason: str
) -> list[dict[str, Any]]:
    if keys:
        return [factory.keys_payload(namespace, chunk, reason) for chunk in split_ids(keys)]
    if pattern is not None:
        return [factory.pattern_payload(namespace, pattern, reason)]
    return [factory.flush_payload(namespace, reason)]


def _check_shapes(registry: Registry, namespace: str, keys: list[str]) -> None:
    """Ids that do not fit the namespace's key template invalidate nothing anyone caches."""
    template = registry.get(namespace).key
    for key in keys:
        if not template.matches(key):
            raise ContractError(
                f"key {key!r} does not have the shape of namespace {namespace!r}'s key template "
                f"{template.text!r} (from {registry.source})",
                rule="key.shape",
            )


def _send(
    options: RedisSettings,
    stream: str,
    producer: str,
    keys: StreamKeys,
    registry: Registry,
    payloads: list[dict[str, Any]],
    timeout: float,
    as_json: bool,
) -> list[str]:
    """Publish; a failure says whether anything may have been appended, and after how long."""
    started = time.monotonic()
    try:
        with SyncProducer.from_url(
            options.url, stream, producer_name=producer, keys=keys, registry=registry,
            socket_timeout=timeout, socket_connect_timeout=timeout, pool_timeout=timeout,
            cluster=options.cluster,
        ) as sync_producer:  # fmt: skip
            batch = sync_producer.batch()
            batch.payloads.extend(payloads)
            entry_ids = batch.send()
    except PublishError as exc:
        elapsed = time.monotonic() - started
        if exc.ambiguous:
            state = "may have been appended"
            advice = "run the command again if in doubt: a duplicate is harmless"
        else:
            state = "was not appended"
            advice = "fix the cause, then run the command again"
        if as_json:  # a script reads the outcome on the last line, even a failure
            _print_json(
                {"ok": False, "ambiguous": exc.ambiguous, "error": str(exc),
                 "elapsed_s": round(elapsed, 3), "published": []}
            )  # fmt: skip
        raise _fail(
            f"{exc}\nthe invalidation {state} (failed after {elapsed:.1f}s; the bound is "
            f"{publish_bound(options):.1f}s); {advice}",
            ExitCode.FINDING,
        ) from None
    return entry_ids


def publish(
    namespace: str = typer.Argument(..., help="A namespace of the registry."),
    key: list[str] = typer.Option(
        [], "--key", "-k", help="A namespace-relative id to invalidate (repeat for more)."
    ),
    pattern: str | None = typer.Option(
        None, "--pattern", "-p", help="A namespace-relative glob, such as '42:*' (never '*')."
    ),
    flush: bool = typer.Option(False, "--flush", help="Invalidate the whole namespace."),
    yes: bool = typer.Option(False, "--yes", help="Confirm --flush."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why: kept in the stream for audit."),
    redis_url: str | None = REDIS_URL_OPT,
    url: str | None = typer.Option(None, "--url", hidden=True),  # deprecated: --redis-url
    stream: str | None = STREAM_OPT,
    prefix: str | None = PREFIX_OPT,
    partitions: int | None = typer.Option(
        None, "--partitions", help="Partitions of the stream. (env CACHEBUS_PARTITIONS)"
    ),
    cluster: bool | None = typer.Option(
        None,
        "--cluster",
        help="--redis-url names a Redis Cluster node. (env CACHEBUS_CLUSTER)",
        show_default=False,
    ),
    producer: str = typer.Option("ops-cli", "--producer", help="Producer name on the events."),
    registry_path: Path | None = REGISTRY_OPT,
    timeout: float = typer.Option(2.0, "--timeout", help="Connect and reply timeout (s)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the entries, send nothing."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on the last line, listing every entry."
    ),
) -> None:
    """Publish one invalidation: ids (--key), a pattern (--pattern) or a flush (--flush)."""
    if url is not None:
        typer.echo("cachebus publish: --url is deprecated; use --redis-url", err=True)
        redis_url = redis_url or url
    chosen = sum((bool(key), pattern is not None, flush))
    if chosen != 1:
        raise _fail("give exactly one of --key (repeatable), --pattern or --flush", ExitCode.USAGE)
    if flush and not (yes or dry_run):
        raise _fail(
            f"--flush drops everything cached in {namespace!r} by every service; add --yes",
            ExitCode.USAGE,
        )
    settings = load_settings(
        "publish", redis_url=redis_url, stream=stream, prefix=prefix, partitions=partitions,
        cluster=cluster, registry=registry_path,
    )  # fmt: skip
    registry = load_cli_registry(registry_path, "publish")
    partitions = settings.partitions
    stream, prefix = settings.stream, settings.prefix
    try:
        keys = StreamKeys(prefix, partitions=partitions)
        factory = EventFactory(producer, registry)
        _check_shapes(registry, namespace, key)
        payloads = _payloads(factory, namespace, key, pattern, reason)
        options = RedisSettings.from_url(
            settings.stream_url(), socket_timeout=timeout, socket_connect_timeout=timeout,
            pool_timeout=timeout, cluster=settings.cluster,
        )  # fmt: skip
    except ContractError as exc:
        if exc.rule == "pattern.bare_star":
            raise _fail(
                f"--pattern {pattern!r} matches the whole namespace {namespace!r}; to drop it "
                "all, use --flush --yes instead",
                ExitCode.USAGE,
            ) from None
        rule = f" [{exc.rule}]" if exc.rule not in str(exc) else ""
        raise _fail(f"{exc}{rule}", ExitCode.USAGE) from None
    except ConfigError as exc:
        raise _fail(str(exc), ExitCode.USAGE) from None
    stream_key = StreamKeys(prefix).stream(stream) if partitions > 1 else keys.stream(stream)
    if dry_run:
        if partitions > 1:
            entries = [
                (keys.for_partition(part).stream(stream), piece)
                for part, piece in Router(keys, stream, None).pieces(payloads)
            ]
        else:
            entries = [(stream_key, payload) for payload in payloads]
        if as_json:
            _print_json(
                {"ok": True, "dry_run": True, "namespace": namespace, "published": [],
                 "would_publish": [{"stream": k, **piece} for k, piece in entries]}
            )  # fmt: skip
            return
        for entry_key, piece in entries:
            typer.echo(f"XADD {entry_key} * {FIELD} {encode_payload(piece).decode()}")
        return
    entry_ids = _send(options, stream, producer, keys, registry, payloads, timeout, as_json)
    if as_json:
        _print_json(
            {"ok": True, "dry_run": False, "namespace": namespace, "published": [
                {"stream": stream_key, "entry_id": entry_id, **payload}
                for payload, entry_id in zip(payloads, entry_ids, strict=True)
            ]}
        )  # fmt: skip
        return
    for payload, entry_id in zip(payloads, entry_ids, strict=True):
        typer.echo(
            f"published {payload['kind']} {namespace} entry={entry_id} "
            f"event_id={payload['event_id']} stream={stream_key}"
        )
