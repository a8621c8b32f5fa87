"""Running ``cachebus`` commands in-process and reading their JSON."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from cachebus.cli import app


def cli(*args: str) -> tuple[int, str]:
    """Run ``cachebus ARGS``; returns the exit code and stdout (stderr apart)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def cli_json(*args: str) -> tuple[int, Any]:
    code, out = cli(*args, "--json")
    return code, json.loads(out)
