"""Ending a helper task without swallowing our own cancellation.

The common idiom ``task.cancel(); with suppress(CancelledError): await task`` is wrong when
the *caller* is cancelled while it waits: the caller's cancellation arrives as the helper's
``CancelledError``, the ``suppress`` eats it, and the caller goes on running. A consumer
cancelled at that moment never ended, and whoever awaited it waited forever (a hang seen in
the consistency checker's in-process kills). ``asyncio.wait`` never raises the helper's
exception, so only a cancellation of the caller itself propagates.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Future[Any], within: float | None = None) -> bool:
    """Cancel ``task`` and wait (up to ``within`` seconds) until it ended; True if it did."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if task in done and not task.cancelled():
        task.exception()  # retrieved: an error while cancelling is not "never retrieved"
    return bool(done)
