"""What the operations commands share: settings, the Redis connection, output, errors.

Exit codes are :class:`cachebus.exits.ExitCode`: 0 done, 1 something is wrong (Redis refused
or is unreachable, ``doctor`` found an error), 2 the command line or a setting is wrong, 130
interrupted.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import redis.asyncio
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from cachebus._interrupt import run_interruptible
from cachebus.contracts.errors import AccessDenied, CachebusError, ConfigError, ContractError
from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.exits import ExitCode
from cachebus.settings import CachebusSettings, explain_invalid, unknown_variables

__all__ = [
    "PREFIX_OPT",
    "REDIS_URL_OPT",
    "SERVICE_OPT",
    "UnknownName",
    "STREAMS_OPT",
    "STREAM_OPT",
    "JSON_OPT",
    "age",
    "connect",
    "err_console",
    "fail",
    "load_settings",
    "now_ms",
    "print_json",
    "run",
    "warn_unknown_variables",
]

T = TypeVar("T")

REDIS_URL_OPT: Any = typer.Option(
    None, "--redis-url", help="Redis of the stream. (env CACHEBUS_REDIS_URL)"
)
PREFIX_OPT: Any = typer.Option(None, "--prefix", help="Key prefix. (env CACHEBUS_PREFIX)")
STREAM_OPT: Any = typer.Option(None, "--stream", help="Stream name. (env CACHEBUS_STREAM)")
STREAMS_OPT: Any = typer.Option(
    None, "--stream", help="Stream name; repeat for several. (env CACHEBUS_STREAM)"
)
JSON_OPT: Any = typer.Option(
    False, "--json", help="One JSON object on the last line of stdout, for scripts."
)
SERVICE_OPT: Any = typer.Option(
    None, "--service", "-s", help="The service: its consumer group. (env CACHEBUS_SERVICE)"
)


class UnknownName(ConfigError):
    """A group or stream named on the command line does not exist: a usage error (exit 2)."""


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def fail(command: str, message: str, code: int = ExitCode.FINDING) -> NoReturn:
    err_console().print(f"[bold red]cachebus {command}:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def load_settings(command: str, **overrides: Any) -> CachebusSettings:
    """Settings from flags (those not None) over the environment (``CACHEBUS_*``); a value
    that does not validate is named as given (``--flag`` or ``CACHEBUS_NAME=value``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    warn_unknown_variables(command)
    try:
        return CachebusSettings(**given)
    except ValidationError as exc:
        fail(command, f"invalid setting: {explain_invalid(exc, given)}", ExitCode.USAGE)


def warn_unknown_variables(command: str) -> None:
    """One line on stderr per ``CACHEBUS_*`` variable no setting reads (a likely typo)."""
    for line in unknown_variables():
        typer.echo(f"cachebus {command}: warning: {line}", err=True)


@contextlib.asynccontextmanager
async def connect(
    settings: CachebusSettings, *, cache: bool = False
) -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    """A client of the stream's Redis (or the cache's) and its redacted URL, closed after."""
    url = settings.cache_redis_url() if cache else settings.stream_url()
    options = RedisSettings.from_url(
        url,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=4,
        client_name="cachebus-ops",
    )
    pool = create_async_pool(options)
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        yield client, options.redacted_url
    finally:
        await client.aclose()
        await pool.aclose()


def run(command: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; our errors become a message and an exit code."""
    try:
        return run_interruptible(main())  # type: ignore[arg-type]
    except (ConfigError, ContractError) as exc:  # a bad name or setting: the caller's to fix
        fail(command, str(exc), ExitCode.USAGE)
    except AccessDenied as exc:  # the finding: this user may not run what the command needs
        fail(command, f"refused: {exc}", ExitCode.FINDING)
    except CachebusError as exc:
        fail(command, str(exc), ExitCode.FINDING)
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def print_json(document: Any) -> None:
    """The grammar of ``--json``: one object, on one line, the last of stdout (a script reads
    ``tail -n 1``; indenting would split it over many)."""
    sys.stdout.write(json.dumps(document, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def now_ms() -> int:
    return int(time.time() * 1000)


def age(seconds: float | None) -> str:
    """``3d 4h``, ``5m 12s``, ``0.4s``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"
