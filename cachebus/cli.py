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

from cachebus.exits import ExitCode

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
        "cachebus.ops.status_cmd:status",
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
    "fastapi": "fastapi",  # cachebus.integrations.fastapi (no command needs it)
    "psycopg2": "cdc",
}


def _extra_of(module: str | None) -> str | None:
    name = module or ""
    return next((x for m, x in EXTRA_OF.items() if name == m or name.startswith(f"{m}.")), None)


def _to_command(target: Any, name: str) -> Any:
    if isinstance(target, typer.Typer):
        return _plain(typer.main.get_group(target))
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    return _plain(typer.main.get_command(single))


def _plain(command: Any) -> Any:
    """One help style for every command, the root's: plain text (no rich markup, so no
    markup or backquotes leak), and each value named for what it is (``--redis-url URL``,
    ``--limit LIMIT``) rather than its type (``<str>``); flags show no value."""
    command.rich_markup_mode = None
    command.help = _unmarked(command.help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = _unmarked(param.help)
        if param.param_type_name == "argument":
            # NAMESPACE, not {NAMESPACE} <str>: the name is the value's description.
            param.display_type_rich = lambda ctx: None
            usage = param.name.upper() if param.required else f"[{param.name.upper()}]"
            param._usage_display_name = lambda usage=usage: usage
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        if param.metavar is None and param.name:
            param.metavar = _METAVARS.get(param.name, param.name.upper())
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)
    return command


def _unmarked(text: str | None) -> str | None:
    """Docstrings double as help: their reStructuredText literals (````x````) print as x."""
    return None if text is None else text.replace("``", "").replace("`", "'")


#: Value names shared by the same option everywhere.
_METAVARS = {
    "redis_url": "URL", "cache_url": "URL", "url": "URL", "registry": "PATH",
    "registry_path": "PATH", "service": "NAME", "group": "NAME", "stream": "NAME",
    "database": "URL", "out": "PATH", "run_dir": "PATH", "secrets": "PATH",
}  # fmt: skip


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
        except KeyboardInterrupt:  # Ctrl-C: the shell's convention, 128 + SIGINT
            typer.echo("interrupted", err=True)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except ModuleNotFoundError as exc:
            extra = _extra_of(exc.name)
            if extra is None:
                raise
            typer.echo(
                f"{ctx.command_path} {ctx.invoked_subcommand} needs the {extra} extra: "
                f"pip install 'cachebus[{extra}]'",
                err=True,
            )
            raise typer.Exit(ExitCode.USAGE) from None


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's renderer would double `cachebus --help`'s time
    help="Reliable cache invalidation over Redis Streams.",
    # Every command's context inherits these: `-h` works on `cachebus dlq list` too.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from cachebus.contracts.semconv import library_version

        typer.echo(library_version())
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the cachebus version and exit.",
    ),
) -> None:  # fmt: skip
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
