"""``cachebus dev-redis start|stop|status``: the two development instances (see
:mod:`cachebus.devredis`); ``infra/dev-redis.sh`` calls this. Prints no password: the
credentials are in ``<dir>/env/<user>.env`` (mode 0600)."""

from __future__ import annotations

from pathlib import Path

import typer

from cachebus.acl import AclLayout, ServiceGrant
from cachebus.contracts.errors import CachebusError
from cachebus.devredis import DevRedisConfig, running, start, stop
from cachebus.exits import ExitCode

__all__ = ["dev_redis_app"]

dev_redis_app = typer.Typer(
    no_args_is_help=True,
    help="Local stream + cache Redis instances from infra/redis/*.conf, with ACL users.",
)

_DIR = typer.Option(Path(".run/redis"), "--dir", help="Run directory (data, logs, secrets).")


@dev_redis_app.command("start")
def start_cmd(
    run_dir: Path = _DIR,
    stream_port: int = typer.Option(6380, help="Port of the stream instance."),
    cache_port: int = typer.Option(6381, help="Port of the cache instance."),
    services: str = typer.Option("bot,api,workers,indexer", help="Services to create users for."),
    retention: str = typer.Option("workers", help="Services whose consumer may trim the stream."),
    config_dir: Path = typer.Option(None, help="Directory of stream.conf and cache.conf."),
) -> None:
    """Start both instances (no-op if they already run on these ports)."""
    names = [s.strip() for s in services.split(",") if s.strip()]
    trimmers = {s.strip() for s in retention.split(",") if s.strip()}
    try:
        layout = AclLayout(tuple(ServiceGrant(n, retention=n in trimmers) for n in names))
        options: dict[str, object] = {}
        if config_dir is not None:
            options["config_dir"] = config_dir
        config = DevRedisConfig(
            run_dir=run_dir, stream_port=stream_port, cache_port=cache_port, layout=layout,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip
        pair = start(config)
    except CachebusError as exc:
        typer.echo(f"cachebus dev-redis: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    for inst in pair.instances:
        typer.echo(f"{inst.role:<7} redis://{pair.address(inst.role)}  pid {inst.pid}")
    users = ", ".join(u.name for u in layout.users() if u.role != "disabled")
    typer.echo(f"users   {users}")
    typer.echo(f"urls    {run_dir}/env/<user>.env (mode 0600; contains passwords)")


@dev_redis_app.command("stop")
def stop_cmd(run_dir: Path = _DIR) -> None:
    """Stop the instances recorded in the run directory, by pid."""
    stopped = stop(run_dir)
    for inst in stopped:
        typer.echo(f"stopped {inst.role} (pid {inst.pid}, port {inst.port})")
    if not stopped:
        typer.echo(f"nothing running in {run_dir}")


@dev_redis_app.command("status")
def status_cmd(run_dir: Path = _DIR) -> None:
    """Exit 0 when both instances run, 1 otherwise."""
    alive = running(run_dir)
    for inst in alive:
        typer.echo(f"{inst.role:<7} 127.0.0.1:{inst.port}  pid {inst.pid}  running")
    if len(alive) < 2:
        typer.echo(f"{2 - len(alive)} instance(s) not running in {run_dir}")
        raise typer.Exit(ExitCode.FINDING)
