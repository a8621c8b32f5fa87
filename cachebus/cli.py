"""The ``cachebus`` command line."""

from __future__ import annotations

import typer

from cachebus import __version__

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reliable cache invalidation over Redis Streams.",
)


@app.command()
def version() -> None:
    """Print the cachebus version."""
    typer.echo(__version__)


def main() -> None:
    app()
