"""``asyncio.run`` for a command, where Ctrl-C always ends it.

``asyncio.run`` answers the first SIGINT with one cancel of the main task. On Python 3.11 a
cancel can be lost inside redis-py (see :mod:`cachebus.core._tasks`): the task goes on, and
``cachebus tail`` or ``status --serve`` ignored Ctrl-C under load (twice in one full run beside
a CPU hog). Here the cancel is repeated until the task has ended, then KeyboardInterrupt is
raised, which the CLI turns into exit 130. Signal handling stays in the CLI's layer.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from cachebus.core._tasks import cancel_and_wait

__all__ = ["run_interruptible"]

T = TypeVar("T")


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main``; on SIGINT cancel it until it ends, then raise KeyboardInterrupt.

    Outside the main thread (a command called from a worker thread, as tests do) signals
    cannot be handled there: plain ``asyncio.run``.
    """
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)
    return asyncio.run(_supervise(main))


async def _supervise(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    waiter = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if interrupted.is_set():
            await cancel_and_wait(task)
            raise KeyboardInterrupt
        return task.result()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await cancel_and_wait(waiter)
        if not task.done():  # we were cancelled ourselves: take the command down with us
            await cancel_and_wait(task)
