"""Ending helper tasks must never swallow the caller's own cancellation (a hang, otherwise)."""

from __future__ import annotations

import asyncio

import redis.asyncio

from cachebus.contracts.keys import StreamKeys
from cachebus.core._tasks import cancel_and_wait
from tests.consumer.helpers import Recorder, make_consumer


async def _sleeper() -> None:
    await asyncio.sleep(60)


async def test_cancel_and_wait_ends_the_task_and_lets_the_callers_cancel_through() -> None:
    async def caller() -> str:
        helper = asyncio.ensure_future(_sleeper())
        await cancel_and_wait(helper)
        await asyncio.sleep(60)
        return "went on"

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0)  # the caller now waits for its helper to end
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()


async def test_cancel_and_wait_reports_a_task_that_did_not_end_in_time() -> None:
    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # cleanup that takes a while
            raise

    task = asyncio.ensure_future(slow_to_end())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, within=0.05) is False
    assert await cancel_and_wait(task, within=5) is True and task.cancelled()


async def test_a_consumer_cancelled_while_its_heartbeat_ends_does_end() -> None:
    # The heartbeat's cleanup awaited its beat task under suppress(CancelledError): a cancel
    # of the consumer landing there was eaten, and whoever awaited the consumer hung.
    client = redis.asyncio.Redis()  # never used: the heartbeat only beats after min_idle / 3
    consumer = make_consumer(client, StreamKeys("unused"), Recorder())

    async def batch() -> None:
        async with consumer.processor._heartbeat(["1-0"]):
            pass
        await asyncio.sleep(60)  # the consumer going on after a swallowed cancel

    task = asyncio.ensure_future(batch())
    await asyncio.sleep(0)  # inside the heartbeat's cleanup, awaiting the beat task
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
    await client.aclose()
