"""Sans-I/O plumbing: logic is written once, as a generator, and driven by a sync or async edge.

A *step* is a generator that yields :class:`Batch` objects (the Redis commands it needs, sent in
one round trip) and receives their replies, then returns its result. The cache core and the
producer write each operation once as a step; :func:`run_async` and :func:`run_sync` are the
only code that touches a client, so the sync facades share every line of logic with the async
API and only the I/O edge is duplicated (the httpx pattern).

A step may also yield :class:`Pause` (the delete rate limit paces itself this way): the driver
sleeps, without blocking an event loop, and sends back an empty reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.cluster

from cachebus.core._cluster_io import execute_cluster_async, execute_cluster_sync
from cachebus.core._wire import round_trip
from cachebus.core.connection import map_redis_errors

__all__ = [
    "AsyncClient",
    "Batch",
    "Call",
    "Pause",
    "Script",
    "ScriptCall",
    "Step",
    "SyncClient",
    "execute_async",
    "run_async",
    "run_sync",
]

#: What the edges drive steps against: one Redis, or a Redis Cluster.
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, sent by SHA and loaded on NOSCRIPT (after a restart the cache is empty)."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())

    def call(self, keys: Sequence[Any], args: Sequence[Any] = ()) -> ScriptCall:
        return ScriptCall(self, tuple(keys), tuple(args))


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: Script
    keys: tuple[Any, ...]
    args: tuple[Any, ...]

    def evalsha(self) -> tuple[Any, ...]:
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)

    def eval(self) -> tuple[Any, ...]:
        return ("EVAL", self.script.text, len(self.keys), *self.keys, *self.args)


Call = tuple[Any, ...] | ScriptCall


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent in one round trip (a pipeline; MULTI/EXEC when ``transaction``).

    With ``raise_on_error=False`` a command's error comes back in its reply slot, already
    translated into the cachebus error tree, instead of raising. On a Redis Cluster client,
    multi-key commands are split per slot and, with ``raise_on_error=False``, a failed round
    trip comes back in every slot too (see :mod:`cachebus.core._cluster_io`).
    """

    calls: Sequence[Call]
    operation: str = "redis"
    transaction: bool = False
    raise_on_error: bool = True
    #: Redis Cluster only: run on this node (``host:port``) instead of routing by key.
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Ask the driver to sleep ``seconds`` before the step goes on."""

    seconds: float


Step = Generator[Batch | Pause, list[Any], T]


def _args(call: Call) -> tuple[Any, ...]:
    return call.evalsha() if isinstance(call, ScriptCall) else call


def _translate(batch: Batch, results: list[Any], where: str) -> list[Any]:
    out: list[Any] = []
    for result in results:
        if isinstance(result, redis.exceptions.RedisError):
            try:
                with map_redis_errors(batch.operation, where):
                    raise result
            except Exception as mapped:  # map_redis_errors only raises our own errors here
                if batch.raise_on_error:
                    raise
                out.append(mapped)
                continue
        out.append(result)
    return out


def _noscript_positions(batch: Batch, results: list[Any]) -> list[int]:
    return [
        i
        for i, (call, result) in enumerate(zip(batch.calls, results, strict=True))
        if isinstance(call, ScriptCall) and isinstance(result, redis.exceptions.NoScriptError)
    ]


async def execute_async(client: AsyncClient, batch: Batch) -> list[Any]:
    """One batch's raw replies (errors in place, untranslated): run_async's I/O edge, also
    for callers that send a fixed batch with no step around it."""
    if isinstance(client, redis.asyncio.RedisCluster):
        return await execute_cluster_async(
            client,
            [_args(call) for call in batch.calls],
            node=batch.node,
            raise_on_error=batch.raise_on_error,
        )
    if len(batch.calls) == 1 and client.single_connection_client:
        # A producer's held connection (pipelines and round_trip would take a pooled one).
        try:
            return [await client.execute_command(*_args(batch.calls[0]))]
        except redis.exceptions.ResponseError as exc:
            return [exc]
    if not batch.transaction:  # the consumer's UNLINKs among others: see cachebus.core._wire
        return await round_trip(client, [_args(call) for call in batch.calls])
    pipe = client.pipeline(transaction=True)
    for call in batch.calls:
        pipe.execute_command(*_args(call))
    return list(await pipe.execute(raise_on_error=False))


def _execute_sync(client: SyncClient, batch: Batch) -> list[Any]:
    if isinstance(client, redis.cluster.RedisCluster):
        return execute_cluster_sync(
            client,
            [_args(call) for call in batch.calls],
            node=batch.node,
            raise_on_error=batch.raise_on_error,
        )
    if len(batch.calls) == 1 and not batch.transaction:
        try:
            return [client.execute_command(*_args(batch.calls[0]))]
        except redis.exceptions.ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=batch.transaction)
    for call in batch.calls:
        pipe.execute_command(*_args(call))
    return list(pipe.execute(raise_on_error=False))


async def run_async(
    step: Step[T],
    client: AsyncClient,
    where: str = "Redis",
    observe: Callable[[float], None] | None = None,
) -> T:
    """Drive ``step`` against an asyncio client.

    ``observe``, if given, receives the duration in seconds of each successful round trip.
    """
    reply: list[Any] | None = None
    while True:
        try:
            batch = step.send(reply) if reply is not None else next(step)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(batch, Pause):
            await asyncio.sleep(batch.seconds)
            reply = []
            continue
        with map_redis_errors(batch.operation, where):
            started = time.perf_counter()
            results = await execute_async(client, batch)
            if observe is not None:
                observe(time.perf_counter() - started)
            for i in _noscript_positions(batch, results):
                call = batch.calls[i]
                assert isinstance(call, ScriptCall)
                try:
                    results[i] = await client.execute_command(*call.eval())
                except redis.exceptions.ResponseError as exc:
                    results[i] = exc
        reply = _translate(batch, results, where)


def run_sync(
    step: Step[T],
    client: SyncClient,
    where: str = "Redis",
    observe: Callable[[float], None] | None = None,
) -> T:
    """Drive ``step`` against a sync client (``observe`` as in :func:`run_async`)."""
    reply: list[Any] | None = None
    while True:
        try:
            batch = step.send(reply) if reply is not None else next(step)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(batch, Pause):
            time.sleep(batch.seconds)
            reply = []
            continue
        with map_redis_errors(batch.operation, where):
            started = time.perf_counter()
            results = _execute_sync(client, batch)
            if observe is not None:
                observe(time.perf_counter() - started)
            for i in _noscript_positions(batch, results):
                call = batch.calls[i]
                assert isinstance(call, ScriptCall)
                execute: Any = client.execute_command  # redis.cluster's is untyped
                try:
                    results[i] = execute(*call.eval())
                except redis.exceptions.ResponseError as exc:
                    results[i] = exc
        reply = _translate(batch, results, where)
