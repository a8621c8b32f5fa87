"""Ending a helper task, for sure, without swallowing our own cancellation.

Two traps, both seen here:

* The idiom ``task.cancel(); with suppress(CancelledError): await task`` is wrong when the
  *caller* is cancelled while it waits: the caller's cancellation arrives as the helper's
  ``CancelledError``, the ``suppress`` eats it, and the caller goes on running (a consumer
  cancelled at that moment never ended; the consistency checker hung on it).
  ``asyncio.wait`` never raises the helper's exception, so only a cancellation of the caller
  itself propagates.
* On Python 3.11 a cancel can be lost *inside* redis-py: ``asyncio.wait_for`` around a socket
  write swallows a cancellation that lands as the write fails, and the command's error is
  raised instead. The task then goes on (a metrics sampler kept sampling and the sidecar
  never exited after SIGTERM, about one stop in ten under load). So a cancel is repeated
  until the task has ended: a later cancel lands at the task's next ``await``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["cancel_and_wait"]

#: How often a cancel is repeated while the task has not ended yet (seconds).
RECANCEL_S = 0.1


async def cancel_and_wait(task: asyncio.Future[Any], within: float | None = None) -> bool:
    """Cancel ``task`` (again, until it ends) and wait up to ``within`` seconds.

    True once it ended; False if it was still running at the bound.
    """
    deadline = None if within is None else time.monotonic() + within
    while not task.done():
        task.cancel()
        wait = RECANCEL_S
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return False
        await asyncio.wait({task}, timeout=wait)
    if not task.cancelled():
        task.exception()  # retrieved: an error while cancelling is not "never retrieved"
    return True
