"""What the operations commands share: settings, the Redis connection, output, exit codes.

Exit codes: 0 done (for ``doctor``: no error found), 1 something is wrong (Redis refused or is
unreachable, ``doctor`` found an error), 2 the command line or a setting is wrong.
"""

from __future__ import annotations

import asyncio
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

from cachebus.contracts.errors import CachebusError, ConfigError, ContractError
from cachebus.core.connection import RedisSettings, create_async_pool
from cachebus.settings import CachebusSettings

__all__ = [
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_USAGE",
    "PREFIX_OPT",
    "REDIS_URL_OPT",
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
]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

T = TypeVar("T")

REDIS_URL_OPT: Any = typer.Option(
    None, "--redis-url", help="Redis of the stream. (env CACHEBUS_REDIS_URL)"
)
PREFIX_OPT: Any = typer.Option(None, "--prefix", help="Key prefix. (env CACHEBUS_PREFIX)")
STREAM_OPT: Any = typer.Option(None, "--stream", help="Stream name. (env CACHEBUS_STREAM)")
STREAMS_OPT: Any = typer.Option(
    None, "--stream", help="Stream name; repeat for several. (env CACHEBUS_STREAM)"
)
JSON_OPT: Any = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def fail(command: str, message: str, code: int = EXIT_FAIL) -> NoReturn:
    err_console().print(f"[bold red]cachebus {command}:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def load_settings(command: str, **overrides: Any) -> CachebusSettings:
    """Settings from flags (those not None) over the environment (``CACHEBUS_*``)."""
    try:
        return CachebusSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(command, f"invalid setting: {exc}", EXIT_USAGE)


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
        return asyncio.run(main())  # type: ignore[arg-type]
    except (ConfigError, ContractError) as exc:  # a bad name or setting: the caller's to fix
        fail(command, str(exc), EXIT_USAGE)
    except CachebusError as exc:
        fail(command, str(exc), EXIT_FAIL)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
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
