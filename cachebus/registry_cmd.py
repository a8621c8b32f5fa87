"""``cachebus registry check|show|diff``: the registry file, checked, shown, compared.

* ``check [PATH]``: load and validate it; exit 0, or 2 with the error (file, line, rule);
* ``show [PATH] [--json]``: every namespace (template, TTL, compression, owners, readers,
  fingerprint);
* ``diff OLD NEW [--json]``: what rolling NEW out changes, and what each change needs (see
  :mod:`cachebus.contracts.registry_diff`); exit 1 when a change needs action.

Without PATH, the file is ``--registry`` / ``CACHEBUS_REGISTRY``, else a ``cachebus.toml``
(or a ``pyproject.toml`` with ``[tool.cachebus]``) in the current directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cachebus.contracts.errors import CachebusError
from cachebus.contracts.registry import Registry
from cachebus.contracts.registry_diff import diff_registries
from cachebus.contracts.registry_file import discover_registry
from cachebus.exits import ExitCode

__all__ = ["REGISTRY_OPT", "load_cli_registry", "registry_app"]


registry_app = typer.Typer(
    no_args_is_help=True, help="The key registry file: check, show, diff.", add_completion=False
)

#: The ``--registry`` option every command that needs namespaces takes.
REGISTRY_OPT: Any = typer.Option(
    None,
    "--registry",
    envvar="CACHEBUS_REGISTRY",
    show_envvar=False,  # the help says it, as every option's does
    help="The registry file (default: a cachebus.toml, or a pyproject.toml with a "
    "tool.cachebus table, in the current directory). (env CACHEBUS_REGISTRY)",
)


def load_cli_registry(path: Path | None, command: str) -> Registry:
    """The registry at ``path`` (or discovered); a one-line error and exit 2 otherwise."""
    found = path or discover_registry(Path.cwd())
    if found is None:
        typer.echo(
            f"cachebus {command}: no registry: pass --registry PATH (or set "
            "CACHEBUS_REGISTRY), or put a cachebus.toml in the current directory",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    try:
        return Registry.from_file(found)
    except CachebusError as exc:
        typer.echo(f"cachebus {command}: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


@registry_app.command("check")
def check(
    path: Path = typer.Argument(None, help="The registry file."),
    registry: Path = REGISTRY_OPT,
) -> None:
    """Validate the registry file: exit 0, or 2 with the error (file:line: ... (rule ...))."""
    loaded = load_cli_registry(path or registry, "registry check")
    typer.echo(
        f"{loaded.source}: {len(loaded)} namespaces, version {loaded.version or '-'}, "
        f"fingerprint {loaded.fingerprint}"
    )


@registry_app.command("show")
def show(
    path: Path = typer.Argument(None, help="The registry file."),
    registry: Path = REGISTRY_OPT,
    as_json: bool = typer.Option(False, "--json", help="One JSON object on the last line."),
) -> None:
    """Every namespace: key template, TTL, compression, owners, readers, fingerprint."""
    loaded = load_cli_registry(path or registry, "registry show")
    if as_json:
        document = {
            "source": str(loaded.source),
            "version": loaded.version,
            "fingerprint": loaded.fingerprint,
            "namespaces": [ns.to_dict() for ns in loaded],
        }
        sys.stdout.write(json.dumps(document) + "\n")  # one line: the --json grammar
        return
    table = Table(title=f"{loaded.source} (version {loaded.version or '-'}, {loaded.fingerprint})")
    for column in ("namespace", "key", "ttl_s", "compression", "patterns", "owners", "readers",
                   "fingerprint"):  # fmt: skip
        table.add_column(column)
    for ns in loaded:
        compression = ns.compression.value + (f" + {ns.dictionary}" if ns.dictionary else "")
        table.add_row(
            ns.name, ns.key.text, str(ns.ttl_s), compression, "yes" if ns.patterns else "no",
            ",".join(ns.owners) or "-", ",".join(ns.readers) or "-", ns.fingerprint,
        )  # fmt: skip
    Console(highlight=False).print(table)


@registry_app.command("diff")
def diff(
    old: Path = typer.Argument(..., help="The registry file running now."),
    new: Path = typer.Argument(..., help="The registry file to roll out."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on the last line."),
) -> None:
    """What rolling NEW out changes; exit 1 when a change needs action (a flush, a dictionary
    shipped to readers first)."""
    before = load_cli_registry(old, "registry diff")
    after = load_cli_registry(new, "registry diff")
    changes = diff_registries(before, after)
    needs = [c for c in changes if c.needs_action]
    if as_json:
        document = {"changes": [c.as_dict() for c in changes], "needs_action": bool(needs)}
        sys.stdout.write(json.dumps(document) + "\n")  # one line: the --json grammar
    elif not changes:
        typer.echo(f"no change: both files define the same namespaces ({after.fingerprint})")
    else:
        table = Table(title=f"{old} -> {new}")
        for column in ("namespace", "change", "old", "new", "action", "why"):
            table.add_column(column, overflow="fold")
        for c in changes:
            style = "bold red" if c.needs_action else None
            table.add_row(c.namespace, c.what, c.old, c.new, c.action.value, c.advice,
                          style=style)  # fmt: skip
        Console(highlight=False).print(table)
    if needs:
        raise typer.Exit(ExitCode.FINDING)
