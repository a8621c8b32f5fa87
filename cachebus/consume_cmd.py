"""``cachebus consume``: run a service's consumers (a sidecar for any service).

A thin call of :class:`cachebus.service.ConsumerService`, the way arq's CLI calls
``run_worker``: every setting of :class:`cachebus.settings.CachebusSettings` is a flag of the
same name (``claim_interval_s`` is ``--claim-interval-s``, and ``CACHEBUS_CLAIM_INTERVAL_S``
in the environment); the flags are generated from the settings, so none can be missing.

Exit codes: 0 after a stop by signal, 2 for a configuration error (a bad setting, a namespace
missing from the registry, a registry file that does not load, or Redis refusing the
credentials or an ACL right: ``AccessDenied``), 130 on a forced second signal. A refused
configuration exits before anything is sent to Redis. No other reply of Redis ends the
process: the consumer retries it (see ``cachebus.consumers.runtime``).

Signals live here and only here: the first SIGTERM or SIGINT stops gracefully (finish and ack
the batch in flight, within the grace period); a second one exits at once (its entries stay
pending and are replayed by the next start, so nothing is lost either way).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr, ValidationError

from cachebus.contracts.errors import AccessDenied, CachebusError, ConfigError
from cachebus.exits import ExitCode
from cachebus.service import ConsumerService
from cachebus.settings import CachebusSettings, explain_invalid, unknown_variables

__all__ = ["CONSUME_SETTINGS", "consume", "flag_of"]

log = logging.getLogger("cachebus.cli")
_FREEZE_AFTER_S = 1.0
#: The settings ``consume`` takes as flags: all but those of other commands.
CONSUME_SETTINGS = tuple(n for n in CachebusSettings.model_fields if n not in {"acl_users"})


def flag_of(name: str) -> str:
    """The flag of a setting: ``claim_interval_s`` -> ``--claim-interval-s``."""
    return "--" + name.replace("_", "-")


def _flag_type(annotation: Any) -> type:
    """The type a flag parses: the setting's, without None; text for secrets and lists."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    if annotation in (bool, int, float, Path):
        return annotation  # type: ignore[no-any-return]
    return str  # str, SecretStr, comma-separated lists


def _parameters() -> list[inspect.Parameter]:
    params = []
    for name in CONSUME_SETTINGS:
        field = CachebusSettings.model_fields[name]
        kind = _flag_type(field.annotation)
        flag = flag_of(name)
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        option = typer.Option(
            None, *decls, help=f"{field.description} (env CACHEBUS_{name.upper()})"
        )
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        )
    log_level = typer.Option("INFO", "--log-level", help="Logging level.")
    params.append(
        inspect.Parameter(
            "log_level", inspect.Parameter.KEYWORD_ONLY, default=log_level, annotation=str
        )
    )
    return params


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


async def serve(service: ConsumerService) -> int:
    """Run ``service`` until SIGTERM/SIGINT (a second one exits at once)."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not stopping:
            log.info("stopping consumer %s (signal again to force)", service.config.consumer)
            stopping.append(asyncio.ensure_future(service.stop()))
        else:
            log.warning("forced exit: pending entries will be replayed at the next start")
            os._exit(ExitCode.INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    # What is allocated by then lives as long as the process: keep it out of GC passes. Once
    # the first read is on its way, not before: a full collection takes tens of milliseconds.
    freeze = loop.call_later(_FREEZE_AFTER_S, _freeze_heap)
    try:
        await service.run()
    except BaseExceptionGroup as group:
        raise _access_denied(group) or group from None
    finally:
        freeze.cancel()
        await service.stop()
        await asyncio.gather(*stopping)  # the signal's stop, done by now
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("consumer %s stopped: %s", service.config.consumer, service.stats.as_dict())
    return ExitCode.OK


def _access_denied(group: BaseExceptionGroup[Any]) -> AccessDenied | None:
    """An AccessDenied of one partition's member (in a partitioned consumer's group) surfaces
    as itself, for one clear line."""
    denied = group.subgroup(AccessDenied)
    while denied is not None:
        first = denied.exceptions[0]
        if isinstance(first, AccessDenied):
            return first
        denied = first if isinstance(first, BaseExceptionGroup) else None
    return None


def consume(**values: Any) -> None:
    """Run the consumer of one service: its group, its cache scope, until SIGTERM."""
    level = str(values.pop("log_level", "INFO"))
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    given = {k: v for k, v in values.items() if v is not None}
    for line in unknown_variables():  # through the log: a sidecar's stderr is its log
        log.warning("%s", line)
    for secret in ("redis_url", "cache_url"):
        if secret in given:
            given[secret] = SecretStr(given[secret])
    try:
        # Everything is checked here, before the first command is sent to Redis.
        service = ConsumerService(CachebusSettings(**given))
        code = asyncio.run(serve(service))
    except ValidationError as exc:  # a setting that does not parse
        typer.echo(f"cachebus consume: invalid setting: {explain_invalid(exc, given)}", err=True)
        code = ExitCode.USAGE
    except CachebusError as exc:
        typer.echo(f"cachebus consume: {exc}", err=True)
        # A refused password or ACL right is configuration too: fix it, do not restart-loop.
        usage = isinstance(exc, ConfigError | ValueError | AccessDenied)
        code = ExitCode.USAGE if usage else ExitCode.FINDING
    sys.exit(code)


consume.__signature__ = inspect.Signature(_parameters())  # type: ignore[attr-defined]
consume.__annotations__ = {p.name: p.annotation for p in _parameters()}
