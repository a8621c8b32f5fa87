"""In-process single-flight: concurrent calls for one key share one execution.

The asyncio version runs the work in its own task and every caller awaits it through
``asyncio.shield``, so a caller that is cancelled does not cancel the work for the others.
Errors are shared too: every caller of a failed flight gets its exception.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["AsyncSingleFlight", "SyncSingleFlight"]

T = TypeVar("T")


class AsyncSingleFlight:
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(work())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        else:
            self.coalesced += 1
        result: T = await asyncio.shield(task)
        return result

    def _landed(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark it retrieved: every waiter may have been cancelled


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SyncSingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._flights)

    def run(self, key: Hashable, work: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                self.coalesced += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            result: T = flight.value
            return result
        try:
            flight.value = work()
            return flight.value  # type: ignore[no-any-return]
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
