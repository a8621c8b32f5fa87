"""Single-flight: concurrent calls for one key share one execution, its value or its error."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cachebus.core.singleflight import AsyncSingleFlight, SyncSingleFlight


async def test_concurrent_async_calls_for_one_key_run_the_work_once() -> None:
    flight = AsyncSingleFlight()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        return 42

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(10)))
    assert results == [42] * 10 and runs == 1 and flight.coalesced == 9 and len(flight) == 0


async def test_async_errors_reach_every_waiter() -> None:
    flight = AsyncSingleFlight()

    async def work() -> int:
        await asyncio.sleep(0.01)
        raise LookupError("db down")

    results = await asyncio.gather(
        *(flight.run("k", work) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)


async def test_a_cancelled_caller_does_not_cancel_the_work_for_the_others() -> None:
    flight = AsyncSingleFlight()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(flight.run("k", work))
    second = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_concurrent_threads_for_one_key_run_the_work_once() -> None:
    flight = SyncSingleFlight()
    runs = 0
    started = threading.Barrier(8)

    def work() -> int:
        nonlocal runs
        runs += 1
        time.sleep(0.05)
        return 7

    results: list[int] = []

    def call() -> None:
        started.wait()
        results.append(flight.run("k", work))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [7] * 8 and runs == 1


def test_thread_errors_reach_every_waiter() -> None:
    flight = SyncSingleFlight()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> int:
        time.sleep(0.05)
        raise LookupError("db down")

    def call() -> None:
        barrier.wait()
        try:
            flight.run("k", work)
        except LookupError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4
