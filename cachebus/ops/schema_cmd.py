"""``cachebus schema``: the event's JSON Schema, the envelope's, or the channel's AsyncAPI."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from cachebus.contracts.errors import ContractError
from cachebus.contracts.events import SCHEMA_VERSION
from cachebus.contracts.keys import StreamKeys
from cachebus.contracts.schema import envelope_schema, event_schema, render
from cachebus.exits import ExitCode
from cachebus.ops._common import PREFIX_OPT, REDIS_URL_OPT, STREAM_OPT, fail, load_settings
from cachebus.ops.asyncapi import asyncapi_document

__all__ = ["Document", "schema"]


class Document(StrEnum):
    EVENT = "event"
    ENVELOPE = "envelope"
    ASYNCAPI = "asyncapi"


def schema(
    document: Document = typer.Argument(Document.EVENT, help="Which document to print."),
    out: Path | None = typer.Option(
        None, "--out", help="Write all three documents into this directory instead."
    ),
    stream: str = STREAM_OPT,
    prefix: str = PREFIX_OPT,
    redis_url: str = REDIS_URL_OPT,
) -> None:
    """Print the event JSON Schema, the envelope schema, or an AsyncAPI 3.0 document."""
    settings = load_settings("schema", stream=stream, prefix=prefix, redis_url=redis_url)
    try:
        docs: dict[str, dict[str, Any]] = {
            f"invalidation-event.v{SCHEMA_VERSION}.json": event_schema(),
            f"envelope.v{SCHEMA_VERSION}.json": envelope_schema(),
            "asyncapi.json": asyncapi_document(
                StreamKeys(settings.prefix), settings.stream, redis_url=settings.stream_url()
            ),
        }
    except ContractError as exc:
        fail("schema", str(exc), ExitCode.USAGE)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in docs.items():
            (out / name).write_text(render(doc), encoding="utf-8")
            typer.echo(str(out / name))
        raise typer.Exit(ExitCode.OK)
    name = {
        Document.EVENT: f"invalidation-event.v{SCHEMA_VERSION}.json",
        Document.ENVELOPE: f"envelope.v{SCHEMA_VERSION}.json",
        Document.ASYNCAPI: "asyncapi.json",
    }[document]
    typer.echo(json.dumps(docs[name], indent=2, sort_keys=True, ensure_ascii=False))
    raise typer.Exit(ExitCode.OK)
