"""Faults injected during a check, spread evenly over the run (in :data:`FAULTS` order).

* ``consumer_kill``: SIGKILL the consumer mid-batch (in-process: cancel it without a graceful
  stop), restart it ``dead_s`` later under the same name: it replays its own pending entries;
* ``proxy_cut``: cut the consumer's connections to Redis for ``cut_s``, then heal;
* ``redis_restart``: SIGKILL the redis-server and start it again on its AOF.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cachebus.consistency.config import FAULTS, CheckConfig, FaultRecord
from cachebus.testing import FaultProxy, RedisServer

__all__ = ["Faults"]


class Faults:
    def __init__(
        self,
        config: CheckConfig,
        consumer: Any,
        proxy: FaultProxy,
        server: RedisServer | None,
        started: float,
        consumer_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.proxy = proxy
        self.server = server
        self.started = started
        self.consumer_ready = consumer_ready
        self.records: list[FaultRecord] = []

    def _at(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> None:
        chosen = [name for name in FAULTS if name in self.config.faults]
        span = self.config.duration_s
        for n, name in enumerate(chosen):
            # Evenly spaced, none in the first or last sixth of the run, and a second apart at
            # least, so each one's effect can be told from the last one's.
            at = span * (1 + 4 * (n + 1) / (len(chosen) + 1)) / 6
            if self.records:
                at = max(at, self.records[-1].ended_s + 1.0)
            await asyncio.sleep(max(0.0, at - self._at()))
            begin = self._at()
            detail = await getattr(self, f"_{name}")()
            self.records.append(FaultRecord(name, round(begin, 3), round(self._at(), 3), detail))

    async def _consumer_kill(self) -> str:
        await self.consumer.kill()
        await asyncio.sleep(self.config.dead_s)
        await self.consumer.start()
        await self.consumer_ready()  # the fault lasts until the new process reads again
        return f"SIGKILL, restarted {self.config.dead_s}s later under the same name"

    async def _proxy_cut(self) -> str:
        self.proxy.cut()
        await asyncio.sleep(self.config.cut_s)
        self.proxy.heal()
        return f"consumer cut from Redis for {self.config.cut_s}s"

    async def _redis_restart(self) -> str:
        assert self.server is not None
        began = time.monotonic()
        await asyncio.to_thread(self.server.restart, crash=True)
        return f"SIGKILL + restart on AOF ({time.monotonic() - began:.2f}s down)"
