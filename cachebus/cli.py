"""The ``cachebus`` command line. Signal handling and environment reading live here only."""

from __future__ import annotations

import typer

from cachebus import __version__
from cachebus.acl_cmd import acl_app
from cachebus.bench import bench_app
from cachebus.check_cmd import check
from cachebus.codec_cmd import codec_app
from cachebus.consume_cmd import consume
from cachebus.demo_cmd import demo
from cachebus.devredis_cmd import dev_redis_app
from cachebus.ops.dlq import dlq_app
from cachebus.ops.doctor import doctor
from cachebus.ops.schema_cmd import schema
from cachebus.ops.status import status
from cachebus.ops.tail import tail
from cachebus.outbox_cmd import outbox_app
from cachebus.publish_cmd import publish

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reliable cache invalidation over Redis Streams.",
)
app.add_typer(bench_app, name="bench")
app.add_typer(codec_app, name="codec")
app.add_typer(acl_app, name="acl")
app.add_typer(dev_redis_app, name="dev-redis")
app.add_typer(outbox_app, name="outbox")
app.command("check")(check)
app.command("consume")(consume)
app.command("demo")(demo)
app.command("publish")(publish)
app.command("status")(status)
app.command("tail")(tail)
app.add_typer(dlq_app, name="dlq")
app.command("doctor")(doctor)
app.command("schema")(schema)


@app.command()
def version() -> None:
    """Print the cachebus version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
