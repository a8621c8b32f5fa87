"""Bounded waits for a condition, that say what they waited for when the bound is hit.

A fixed ``sleep`` is either too short on a loaded machine (a flaky test) or too long on an idle
one; a bare pytest timeout says nothing about what was missing. :func:`eventually` polls a
condition until it holds and, at its bound, fails with the condition's name and whatever the
caller's ``diagnose`` returns (pending counts, a consumer's last log lines).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]

Check = Callable[[], Awaitable[bool] | bool]
Diagnose = Callable[[], Awaitable[str] | str]


async def _value(fn: Callable[[], object]) -> object:
    result = fn()
    if inspect.isawaitable(result):
        return await result
    return result


async def eventually(
    check: Check,
    *,
    within: float,
    what: str,
    diagnose: Diagnose | None = None,
    interval: float = 0.05,
) -> float:
    """Poll ``check`` until it is true; returns the seconds it took.

    Raises ``AssertionError`` naming ``what`` and the diagnosis after ``within`` seconds.
    """
    started = time.monotonic()
    while not await _value(check):
        elapsed = time.monotonic() - started
        if elapsed > within:
            detail = ""
            if diagnose is not None:
                try:
                    detail = f"\n{await _value(diagnose)}"
                except Exception as exc:  # the diagnosis must not hide the failure
                    detail = f"\n(diagnosis failed: {exc!r})"
            raise AssertionError(f"not within {within:.1f} s: {what}{detail}")
        await asyncio.sleep(interval)
    return time.monotonic() - started
