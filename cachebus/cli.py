"""The ``cachebus`` command line. Signal handling and environment reading live here only.

Each command is imported when it runs, never at start: ``cachebus --help`` and ``cachebus
version`` load typer and this module alone, so they answer fast, work without any extra, and
a command that needs an extra (the demo needs ``otel``) says so in one line and exits 2 instead
of every command failing at import.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

__all__ = ["COMMANDS", "EXTRA_OF", "app", "main"]

#: Each command: where it lives ("module:attribute", a typer app or a command function) and the
#: one line ``cachebus --help`` shows for it (a test checks it is the command's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "check": (
        "cachebus.check_cmd:check",
        "Measure consistency: stale values after quiescence, invalidations applied within 1 s.",
    ),
    "consume": (
        "cachebus.consume_cmd:consume",
        "Run the consumer of one service: its group, its cache scope, until SIGTERM.",
    ),
    "demo": (
        "cachebus.demo_cmd:demo",
        "Run the audited system in miniature under faults; exit 1 if anything was lost or stale.",
    ),
    "publish": (
        "cachebus.publish_cmd:publish",
        "Publish one invalidation: ids (--key), a pattern (--pattern) or a flush (--flush).",
    ),
    "status": (
        "cachebus.ops.status:status",
        "Per stream and group: lag, pending, dead letters, flushes, counters, registry versions.",
    ),
    "tail": (
        "cachebus.ops.tail:tail",
        "Follow invalidation events as they are published (no consumer group involved).",
    ),
    "doctor": (
        "cachebus.ops.doctor:doctor",
        "Check the deployment (version, eviction, persistence, timeouts, groups, ACL, registry).",
    ),
    "schema": (
        "cachebus.ops.schema_cmd:schema",
        "Print the event JSON Schema, the envelope schema, or an AsyncAPI 3.0 document.",
    ),
    "dlq": ("cachebus.ops.dlq:dlq_app", "Inspect and re-drive a group's dead letters."),
    "registry": (
        "cachebus.registry_cmd:registry_app",
        "The key registry file: check, show, diff.",
    ),
    "bench": (
        "cachebus.bench:bench_app",
        "Benchmarks against their baselines, measured in the same run.",
    ),
    "codec": ("cachebus.codec_cmd:codec_app", "The cache value codec: zstd dictionaries."),
    "acl": ("cachebus.acl_cmd:acl_app", "Least-privilege Redis ACL users."),
    "dev-redis": (
        "cachebus.devredis_cmd:dev_redis_app",
        "Local stream + cache Redis instances from infra/redis/*.conf, with ACL users.",
    ),
    "outbox": ("cachebus.outbox_cmd:outbox_app", "The transactional outbox."),
    "cdc": (
        "cachebus.cdc_cmd:cdc",
        "Relay PostgreSQL's commit log (a logical replication slot) to the stream.",
    ),
}

#: The modules each extra of pyproject.toml brings (a missing one names its extra).
EXTRA_OF: dict[str, str] = {
    "opentelemetry.sdk": "otel",
    "opentelemetry.exporter": "otel",
    "prometheus_client": "otel",
    "faststream": "faststream",
    "asyncpg": "outbox",
    "psycopg2": "cdc",
}


def _extra_of(module: str | None) -> str | None:
    name = module or ""
    return next((x for m, x in EXTRA_OF.items() if name == m or name.startswith(f"{m}.")), None)


def _to_command(target: Any, name: str) -> Any:
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class _LazyCommand(TyperCommand):
    """Stands in for a command in the listing; builds the real one when it is invoked."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name=name, help=short_help, short_help=short_help)
        self.target = target
        self._name = name
        self._real: Any = None

    def load(self) -> Any:
        if self._real is None:
            module, attribute = self.target.split(":")
            # Importing allocates only what lives on (modules, classes, pydantic schemas): the
            # cycle collector's passes over it are wasted, about an eighth of `consume`'s start.
            gc.disable()
            try:
                target = getattr(importlib.import_module(module), attribute)
            finally:
                gc.enable()
            self._real = _to_command(target, self._name)
        return self._real

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        # The group invokes the context's command: the real one from here on.
        return self.load().make_context(info_name, args, parent=parent, **extra)


def _fast_help_option(option: Any) -> Any:
    # An unset --help arrives as None, which typer coerces through pydantic (~60 ms of
    # imports for `cachebus version`); a False default is a bool it lets through as is.
    if option is not None:
        option.default = False
    return option


class _VersionCommand(TyperCommand):
    def get_help_option(self, ctx: Any) -> Any:
        return _fast_help_option(super().get_help_option(ctx))


class LazyGroup(TyperGroup):
    """The root group: the commands of :data:`COMMANDS`, imported when invoked."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        own = dict(self.commands)  # `version`: the one command defined here
        self.commands = {n: _LazyCommand(n, *entry) for n, entry in COMMANDS.items()}
        self.commands.update(own)

    def get_help_option(self, ctx: Any) -> Any:
        return _fast_help_option(super().get_help_option(ctx))

    def load(self, name: str) -> Any:
        """The real command ``name`` (imports its module)."""
        command = self.commands[name]
        return command.load() if isinstance(command, _LazyCommand) else command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            extra = _extra_of(exc.name)
            if extra is None:
                raise
            typer.echo(
                f"{ctx.command_path} {ctx.invoked_subcommand} needs the {extra} extra: "
                f"pip install 'cachebus[{extra}]'",
                err=True,
            )
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's renderer would double `cachebus --help`'s time
    help="Reliable cache invalidation over Redis Streams.",
)


@app.callback()
def _root() -> None:
    """Reliable cache invalidation over Redis Streams."""


@app.command(cls=_VersionCommand)
def version() -> None:
    """Print the cachebus version."""
    from cachebus.contracts.semconv import library_version

    typer.echo(library_version())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
