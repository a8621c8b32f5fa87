"""The checked service's consumer: a group consumer applying the stream to its Redis cache,
logging what it applied (see :mod:`cachebus.consistency.ledger`), in a subprocess the check
can SIGKILL, or in-process where a "crash" is a cancel without a graceful stop.

Run as ``python -m cachebus.consistency.consumer URL PREFIX SCOPE NAMESPACE LOG``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import redis.asyncio

from cachebus.consistency.registry import CHECK_REGISTRY
from cachebus.consumers import Consumer, ConsumerConfig, ConsumerObserver, RedisCacheSink
from cachebus.consumers.config import FlushReason
from cachebus.consumers.plan import Delivered
from cachebus.contracts.errors import ConsumerError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.core import Cache, CacheConfig
from cachebus.core._tasks import cancel_and_wait
from cachebus.core.connection import RedisSettings, create_async_pool

__all__ = ["InProcessConsumer", "LoggingObserver", "SubprocessConsumer", "build"]

STREAM = "inval"


class LoggingObserver(ConsumerObserver):
    """Appends R/A/F lines; each line is written and flushed at once (it survives SIGKILL)."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self._announced = False

    def _line(self, text: str) -> None:
        self.log.write(f"{text}\n")
        self.log.flush()

    def on_read(self, source: str, count: int, state: object) -> None:
        if not self._announced:
            self._announced = True
            self._line(f"R {int(time.time() * 1000)}")

    def on_applied(self, delivered: Sequence[Delivered], started: float, ended: float) -> None:
        if delivered:
            ids = " ".join(d.event.event_id for d in delivered)
            self._line(f"A {int(time.time() * 1000)} {ids}")

    def on_flush(self, reason: FlushReason, namespaces: frozenset[str], detail: str) -> None:
        self._line(f"F {int(time.time() * 1000)} {reason.value} {','.join(sorted(namespaces))}")


def consumer_config(scope: str, namespace: str) -> ConsumerConfig:
    # Short timings: a restarted member drains its own pending entries at once, a dead one is
    # claimed after 1 s, and a server restart is noticed within half a second.
    return ConsumerConfig(
        stream=STREAM,
        group=scope,
        consumer=f"{scope}-1",
        namespaces=frozenset({namespace}),
        block_ms=100,
        min_idle_ms=1000,
        backoff_base_s=0.02,
        backoff_cap_s=0.5,
        grace_period_s=1.0,
        hard_deadline_s=2.0,
    )


def build(url: str, prefix: str, scope: str, namespace: str, log_path: Path) -> Consumer:
    """Build the consumer (not started): its own pool, its cache scope, its log."""
    settings = RedisSettings.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
    client = redis.asyncio.Redis(connection_pool=create_async_pool(settings))
    log = open(log_path, "a", encoding="ascii")  # noqa: SIM115 - lives as long as the consumer
    # No circuit breaker on the sink: an invalidation is never skipped anyway (it is retried
    # while entries stay pending), and an open breaker would hold every retry back for its
    # whole cooldown after Redis is back (5 s by default) instead of the consumer's backoff.
    space = KeySpace(prefix=prefix, scope=scope, registry=CHECK_REGISTRY)
    cache = Cache(client, space, CacheConfig(breaker=None))
    return Consumer(
        client,
        consumer_config(scope, namespace),
        [RedisCacheSink(cache)],
        keys=StreamKeys(prefix),
        observer=LoggingObserver(log),
        registry=CHECK_REGISTRY,
        where=settings.redacted_url,
    )


def _append(path: Path) -> IO[bytes]:
    return open(path, "ab")


class SubprocessConsumer:
    """The consumer as its own process; :meth:`kill` is a SIGKILL."""

    def __init__(self, url: str, prefix: str, scope: str, namespace: str, log: Path) -> None:
        self.args = [url, prefix, scope, namespace, str(log)]
        self.errors = log.with_suffix(".stderr")
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with _append(self.errors) as errors:  # the consumer's logging, kept for diagnosis
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cachebus.consistency.consumer",
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
            )

    def diagnosis(self) -> str:
        try:
            return self.errors.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            done, _ = await asyncio.wait({asyncio.ensure_future(proc.wait())}, timeout=5)
            if not done:
                await self.kill()
        self.proc = None


class InProcessConsumer:
    """The consumer as a task; :meth:`kill` cancels it without letting it finish or ack."""

    def __init__(self, url: str, prefix: str, scope: str, namespace: str, log: Path) -> None:
        self.args = (url, prefix, scope, namespace, log)
        self.consumer: Consumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.starts = 0

    def diagnosis(self) -> str:
        return "(the in-process consumer logs through this process's logging)"

    async def start(self) -> None:
        self.starts += 1
        self.consumer = build(*self.args)
        self.task = asyncio.create_task(self.consumer.run())

    async def kill(self) -> None:
        task, consumer = self.task, self.consumer
        self.task = self.consumer = None
        try:
            if task is not None and not await cancel_and_wait(task, within=10.0):
                raise ConsumerError("the in-process consumer did not end within 10 s of a cancel")
            if consumer is not None:
                # An ack shielded from the cancel may still be running on a pooled connection:
                # let it end before the pool closes, or it reconnects into a closed pool.
                await consumer.processor.wait_acks(2.0)
        finally:
            if consumer is not None:
                await _close(consumer)

    async def stop(self) -> None:
        task, consumer = self.task, self.consumer
        self.task = self.consumer = None
        try:
            if consumer is not None:
                await consumer.stop()  # bounded by its hard deadline
            if task is not None:
                await asyncio.wait(
                    {task}, timeout=consumer.config.hard_deadline_s if consumer else 10
                )
        finally:
            if consumer is not None:
                await _close(consumer)


async def _close(consumer: Consumer) -> None:
    """Close what :func:`build` opened: the pool, then the log (whatever the pool did)."""
    client = consumer.group.client
    try:
        await client.aclose()
        if isinstance(client, redis.asyncio.Redis):
            await client.connection_pool.aclose()
    finally:
        observer = consumer.observer
        if isinstance(observer, LoggingObserver):
            observer.log.close()


async def _main(args: list[str]) -> None:
    consumer = build(args[0], args[1], args[2], args[3], Path(args[4]))
    loop = asyncio.get_running_loop()
    runner = asyncio.ensure_future(consumer.run())
    stopping: list[asyncio.Future[None]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            sig, lambda: stopping.append(asyncio.ensure_future(consumer.stop()))
        )
    await runner
    await _close(consumer)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:6]))
