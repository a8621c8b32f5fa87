"""``cachebus acl``: write the least-privilege ``users.acl`` for a deployment.

Examples::

    cachebus acl render --out infra/redis/users.acl                  # the template (users off)
    cachebus acl render --secrets .run/redis/secrets.env --out users.acl   # with passwords
    cachebus acl render --services bot,api --retention api --prefix cb --stream inval

Passwords go to the ``--secrets`` file only (mode 0600, reused when it exists); the ACL file
holds their SHA-256 hashes, and nothing this command prints contains a password.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cachebus.acl import (
    DEFAULT_LAYOUT,
    AclLayout,
    ServiceGrant,
    load_or_create_secrets,
    render_acl,
)
from cachebus.contracts.errors import CachebusError
from cachebus.exits import ExitCode

__all__ = ["acl_app"]

acl_app = typer.Typer(no_args_is_help=True, help="Least-privilege Redis ACL users.")

_DEFAULT_SERVICES = ",".join(s.name for s in DEFAULT_LAYOUT.services)
_DEFAULT_RETENTION = ",".join(s.name for s in DEFAULT_LAYOUT.services if s.retention)


def _layout(
    services: str, retention: str | None, prefix: str, stream: str, user_prefix: str
) -> AclLayout:
    names = [s.strip() for s in services.split(",") if s.strip()]
    if retention is None:  # the default layout's trimmers, among the services named
        trimmers = {s.name for s in DEFAULT_LAYOUT.services if s.retention} & set(names)
    else:
        trimmers = {s.strip() for s in retention.split(",") if s.strip()}
    unknown = sorted(trimmers - set(names))
    if unknown:
        raise typer.BadParameter(f"--retention names services not in --services: {unknown}")
    grants = tuple(ServiceGrant(name, retention=name in trimmers) for name in names)
    return AclLayout(grants, prefix=prefix, stream=stream, user_prefix=user_prefix)


@acl_app.command("render")
def render(
    out: Path | None = typer.Option(None, help="Write the ACL here (default: stdout)."),
    secrets: Path | None = typer.Option(
        None,
        help="Passwords file (NAME=value, 0600): read, completed, used. Without it, "
        "every user is rendered 'off' (a template nobody can log in with).",
    ),
    services: str = typer.Option(_DEFAULT_SERVICES, help="Comma-separated services."),
    retention: str | None = typer.Option(
        None,
        "--retention",
        help=f"Services whose consumer may trim the stream (default: {_DEFAULT_RETENTION} "
        "when named in --services, else none).",
        show_default=False,
    ),
    prefix: str = typer.Option("cb", help="Key prefix (CACHEBUS_PREFIX)."),
    stream: str = typer.Option("inval", help="Stream name (CACHEBUS_STREAM)."),
    user_prefix: str = typer.Option("cachebus", help="ACL user names start with this."),
) -> None:
    """Render users.acl: producer, cdc relay, a consumer per service, ops, admin; default off."""
    try:
        layout = _layout(services, retention, prefix, stream, user_prefix)
        passwords = load_or_create_secrets(secrets, layout) if secrets else None
        text = render_acl(layout, passwords)
    except CachebusError as exc:
        typer.echo(f"cachebus acl render: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    for user in layout.users():
        typer.echo(f"  {user.name:<28} {user.role}", err=True)
    where = f"passwords in {secrets}" if secrets else "no passwords: every user is off"
    typer.echo(f"{len(layout.users())} users ({where})", err=True)
    if not any(s.retention for s in layout.services):
        typer.echo(
            "no service may trim the stream (name one with --retention): it grows to its "
            "MAXLEN cap",
            err=True,
        )
