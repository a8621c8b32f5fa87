"""The I/O edge for Redis Cluster clients: the same steps, run against a cluster.

Steps are written for one Redis: ``MGET gen key1 key2`` and ``UNLINK key1 key2 ...`` name keys
that, on a cluster, live in different slots, which a cluster refuses (CROSSSLOT). Here such a
call is split into one command per slot, all sent in one cluster pipeline (redis-py sends each
node's share concurrently, one round trip per node), and the replies are merged back into the
one reply the step expects: a count for ``UNLINK``/``DEL``/``EXISTS``/``TOUCH``, the values in
the original order for ``MGET``. Every other command must already name keys of one slot (the
key layout sees to that: a lease and its value, a partition's stream and its group meta).

A :class:`~cachecore._io.Batch` with ``node`` set runs on that node (``host:port``): that is
how a step SCANs each primary. With ``raise_on_error=False``, a failure of the whole round trip
(a node died mid-scan) comes back in every reply slot instead of raising, so the step can
re-read the topology and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.cluster import PipelineCommand

from contracts.partitions import key_slot

__all__ = ["Plan", "execute_cluster_async", "execute_cluster_sync", "plan_calls"]

_SUMMED = frozenset({"UNLINK", "DEL", "EXISTS", "TOUCH"})

Merge = Callable[[list[Any]], Any]


def _name(command: Any) -> str:
    return (command.decode() if isinstance(command, bytes) else str(command)).upper()


def _sum(replies: list[Any]) -> Any:
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return sum(int(r) for r in replies)


def _mget_merge(positions: list[list[int]], size: int) -> Merge:
    def merge(replies: list[Any]) -> Any:
        out: list[Any] = [None] * size
        for where, reply in zip(positions, replies, strict=True):
            if isinstance(reply, Exception):
                return reply
            for index, value in zip(where, reply, strict=True):
                out[index] = value
        return out

    return merge


def _by_slot(keys: Sequence[Any]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(index)
    return groups


class Plan:
    """Commands to send, and how to fold their replies back into one reply per call."""

    __slots__ = ("commands", "folds")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        #: Per original call: (first command index, command count, merge or None).
        self.folds: list[tuple[int, int, Merge | None]] = []

    def add(self, args: tuple[Any, ...]) -> None:
        if isinstance(args[0], bytes):
            # The cluster client looks commands up by text name (bytes break its resolver).
            args = (args[0].decode(), *args[1:])
        name = _name(args[0])
        keys = args[1:]
        if (name in _SUMMED or name == "MGET") and len(keys) > 1:
            groups = _by_slot(keys)
            if len(groups) > 1:
                start = len(self.commands)
                for indexes in groups.values():
                    self.commands.append((args[0], *(keys[i] for i in indexes)))
                merge = _sum if name in _SUMMED else _mget_merge(list(groups.values()), len(keys))
                self.folds.append((start, len(groups), merge))
                return
        self.folds.append((len(self.commands), 1, None))
        self.commands.append(args)

    def fold(self, replies: list[Any]) -> list[Any]:
        out: list[Any] = []
        for start, count, merge in self.folds:
            part = replies[start : start + count]
            out.append(part[0] if merge is None else merge(part))
        return out


def plan_calls(calls: Sequence[tuple[Any, ...]]) -> Plan:
    plan = Plan()
    for args in calls:
        plan.add(args)
    return plan


def _unknown_node(name: str) -> redis.exceptions.ConnectionError:
    return redis.exceptions.ConnectionError(
        f"cluster node {name} is not part of the topology the client knows (failover?)"
    )


def _redirect_as_unavailable(reply: Any) -> Any:
    """On a node-targeted batch, a redirection means the topology moved on: retry later."""
    if isinstance(reply, redis.exceptions.AskError | redis.exceptions.TryAgainError):
        return redis.exceptions.ClusterDownError(f"slot moved during the operation ({reply})")
    return reply


def _as_redis_error(exc: Exception) -> redis.exceptions.RedisError:
    if isinstance(exc, redis.exceptions.RedisError):
        return exc
    # SlotNotCoveredError is no RedisError: carry it as what it means, the cluster is down.
    return redis.exceptions.ClusterDownError(str(exc))


async def execute_cluster_async(
    client: redis.asyncio.RedisCluster,
    calls: Sequence[tuple[Any, ...]],
    *,
    node: str | None,
    raise_on_error: bool,
) -> list[Any]:
    """Run ``calls`` in one cluster pipeline; replies as one Redis would have given them."""
    plan = plan_calls(calls)
    try:
        if node is not None:
            target = client.get_node(node_name=node)
            if target is None:
                # Promoted since the client last looked (CLUSTER SLOTS may omit replicas, so
                # it may never have known it): reload the topology.
                await client.nodes_manager.initialize()
                target = client.get_node(node_name=node)
            if target is None:
                raise _unknown_node(node)
            # Straight to the node: a cluster pipeline that retries after a connection error
            # forgets the target and sends a keyless command to every primary.
            commands = [PipelineCommand(i, *args) for i, args in enumerate(plan.commands)]
            await target.execute_pipeline(commands)
            replies = [_redirect_as_unavailable(c.result) for c in commands]
        else:
            pipe = client.pipeline(transaction=False)
            for args in plan.commands:
                pipe.execute_command(*args)
            replies = list(await pipe.execute(raise_on_error=False))
    except (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.SlotNotCoveredError,
    ) as exc:
        if raise_on_error:
            raise
        return [_as_redis_error(exc)] * len(calls)
    return plan.fold(replies)


def execute_cluster_sync(
    client: redis.cluster.RedisCluster,
    calls: Sequence[tuple[Any, ...]],
    *,
    node: str | None,
    raise_on_error: bool,
) -> list[Any]:
    """The blocking twin of :func:`execute_cluster_async`."""
    plan = plan_calls(calls)
    try:
        if node is not None:
            target = client.get_node(node_name=node)
            if target is None:
                client.nodes_manager.initialize()
                target = client.get_node(node_name=node)
            if target is None:
                raise _unknown_node(node)
            pipe: Any = client.get_redis_connection(target).pipeline(transaction=False)
            for args in plan.commands:
                pipe.execute_command(*args)
            replies = [_redirect_as_unavailable(r) for r in pipe.execute(raise_on_error=False)]
        else:
            pipe = client.pipeline(transaction=False)
            for args in plan.commands:
                pipe.execute_command(*args)
            replies = list(pipe.execute(raise_on_error=False))
    except (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.SlotNotCoveredError,
    ) as exc:
        if raise_on_error:
            raise
        return [_as_redis_error(exc)] * len(calls)
    return plan.fold(replies)
