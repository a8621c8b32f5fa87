"""The I/O edge for Redis Cluster clients: the same steps, run against a cluster.

Steps are written for one Redis: ``MGET gen key1 key2`` and ``UNLINK key1 key2 ...`` name keys
that, on a cluster, live in different slots, which a cluster refuses (CROSSSLOT). Here such a
call is split into one command per slot, all sent in one cluster pipeline (redis-py sends each
node's share concurrently, one round trip per node), and the replies are merged back into the
one reply the step expects: a count for ``UNLINK``/``DEL``/``EXISTS``/``TOUCH``, the values in
the original order for ``MGET``. Every other command must already name keys of one slot (the
key layout sees to that: a lease and its value, a partition's stream and its group meta).

A :class:`~cachebus.core._io.Batch` with ``node`` set runs on that node (``host:port``): that is
how a step SCANs each primary. With ``raise_on_error=False``, a failure of the whole round trip
(a node died mid-scan) comes back in every reply slot instead of raising, so the step can
re-read the topology and go on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.cluster import PipelineCommand

from cachebus.contracts.partitions import key_slot

__all__ = ["FusedUnlink", "Plan", "execute_cluster_async", "execute_cluster_sync", "plan_calls"]

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


#: UNLINK several calls' keys of one slot in one command; one count per call, in order.
#: KEYS: every call's keys of the slot, concatenated; ARGV: how many keys each call has.
_FUSED_UNLINK = """
local out, pos = {}, 1
for i = 1, #ARGV do
  local n = tonumber(ARGV[i])
  if n > 0 then
    out[i] = redis.call('UNLINK', unpack(KEYS, pos, pos + n - 1))
    pos = pos + n
  else
    out[i] = 0
  end
end
return out
"""
_FUSED_SHA = hashlib.sha1(_FUSED_UNLINK.encode()).hexdigest()


class FusedUnlink(Plan):
    """Several UNLINK calls (a value's key and its lease share a slot): one command per slot.

    Each call still gets its own count back, exactly as from separate UNLINKs, but a cluster
    round trip carries half the commands (the client's per-command cost dominates there).
    """

    __slots__ = ("owners", "width")

    def __init__(self, calls: Sequence[tuple[Any, ...]]) -> None:
        super().__init__()
        self.width = len(calls)
        per_slot: dict[int, list[list[Any]]] = {}
        for index, call in enumerate(calls):
            for key in call[1:]:
                per_slot.setdefault(key_slot(key), [[] for _ in calls])[index].append(key)
        #: Per command: the call it counts for, or None when it returns one count per call.
        self.owners: list[int | None] = []
        for lists in per_slot.values():
            used = [i for i, keys in enumerate(lists) if keys]
            if len(used) == 1:
                self.commands.append(("UNLINK", *lists[used[0]]))
                self.owners.append(used[0])
            else:
                keys = [k for part in lists for k in part]
                counts = [len(part) for part in lists]
                self.commands.append(("EVALSHA", _FUSED_SHA, len(keys), *keys, *counts))
                self.owners.append(None)

    def fold(self, replies: list[Any]) -> list[Any]:
        totals: list[Any] = [0] * self.width
        for owner, reply in zip(self.owners, replies, strict=True):
            if isinstance(reply, Exception):
                return [reply] * self.width
            if owner is not None:
                totals[owner] += int(reply)
            else:
                for index, count in enumerate(reply):
                    totals[index] += int(count)
        return totals


def plan_calls(calls: Sequence[tuple[Any, ...]]) -> Plan:
    if len(calls) > 1 and all(_name(c[0]) == "UNLINK" and len(c) > 1 for c in calls):
        return FusedUnlink(calls)
    plan = Plan()
    for args in calls:
        plan.add(args)
    return plan


def noscript_fallbacks(plan: Plan, replies: list[Any]) -> list[tuple[int, tuple[Any, ...]]]:
    """``(index, EVAL args)`` of fused commands the server did not know the script of."""
    return [
        (i, ("EVAL", _FUSED_UNLINK, *args[2:]))
        for i, (args, reply) in enumerate(zip(plan.commands, replies, strict=True))
        if args[0] == "EVALSHA"
        and args[1] == _FUSED_SHA
        and isinstance(reply, redis.exceptions.NoScriptError)
    ]


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


#: Commands whose first argument is their (only, or same-slot) key: sent straight to the node
#: serving that slot, without redis-py's per-command routing (most of a cluster pipeline's cost).
_KEY_FIRST = frozenset(
    {"GET", "GETEX", "SET", "UNLINK", "DEL", "EXISTS", "TOUCH", "MGET", "XADD", "INCR",
     "HGETALL", "HSET", "HGET", "PEXPIRE", "EXPIRE", "PTTL"}
)  # fmt: skip


def _slot_of(args: tuple[Any, ...]) -> int | None:
    name = _name(args[0])
    if name in _KEY_FIRST and len(args) > 1:
        return key_slot(args[1])
    if name in ("EVALSHA", "EVAL") and len(args) > 3 and int(args[2]) > 0:
        return key_slot(args[3])
    return None


async def _keyed_async(
    client: redis.asyncio.RedisCluster, commands: list[tuple[Any, ...]]
) -> list[Any] | None:
    """Send each command to the primary of its slot, one pipeline per node, concurrently.

    None when some command's node cannot be told from here (the caller falls back to a
    cluster pipeline). Redirected commands (the slot moved) are re-sent through the client,
    which follows the redirection and refreshes its slot map.
    """
    if client._initialize:
        await client.initialize()
    slots = client.nodes_manager.slots_cache
    per_node: dict[str, tuple[redis.asyncio.cluster.ClusterNode, list[PipelineCommand]]] = {}
    queued: list[PipelineCommand] = []
    for position, args in enumerate(commands):
        slot = _slot_of(args)
        owners = slots.get(slot) if slot is not None else None
        if not owners:
            return None
        command = PipelineCommand(position, *args)
        queued.append(command)
        per_node.setdefault(owners[0].name, (owners[0], []))[1].append(command)
    try:
        await asyncio.gather(*(node.execute_pipeline(cmds) for node, cmds in per_node.values()))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        client._initialize = True  # a node is gone: reload the topology before the next call
        raise
    for command in queued:
        if isinstance(command.result, redis.exceptions.AskError | redis.exceptions.TryAgainError):
            try:
                command.result = await client.execute_command(*command.args)
            except redis.exceptions.ResponseError as exc:
                command.result = exc
    return [command.result for command in queued]


async def execute_cluster_async(
    client: redis.asyncio.RedisCluster,
    calls: Sequence[tuple[Any, ...]],
    *,
    node: str | None,
    raise_on_error: bool,
) -> list[Any]:
    """Run ``calls`` in one round trip per node; replies as one Redis would have given them."""
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
            keyed = await _keyed_async(client, plan.commands)
            if keyed is None:
                pipe = client.pipeline(transaction=False)
                for args in plan.commands:
                    pipe.execute_command(*args)
                keyed = list(await pipe.execute(raise_on_error=False))
            replies = keyed
            for index, eval_args in noscript_fallbacks(plan, replies):
                try:
                    replies[index] = await client.execute_command(*eval_args)
                except redis.exceptions.ResponseError as exc:
                    replies[index] = exc
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
            execute: Any = client.execute_command  # redis.cluster's is untyped
            for index, eval_args in noscript_fallbacks(plan, replies):
                try:
                    replies[index] = execute(*eval_args)
                except redis.exceptions.ResponseError as exc:
                    replies[index] = exc
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
