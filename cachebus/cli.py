"""The ``cachebus`` command line. Signal handling and environment reading live here only."""

from __future__ import annotations

import typer

from cachebus import __version__
from cachebus.bench import bench_app
from cachebus.publish_cmd import publish

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reliable cache invalidation over Redis Streams.",
)
app.add_typer(bench_app, name="bench")
app.command("publish")(publish)


@app.command()
def version() -> None:
    """Print the cachebus version."""
    typer.echo(__version__)


def main() -> None:
    app()
