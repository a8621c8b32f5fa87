"""Commands that reach Redis at most once per call: the client library never re-sends them.

redis-py re-sends a command, or a whole pipeline, when an attempt fails with a connection
error or a timeout: the ``Retry`` of each pooled connection (``RedisSettings.retries``), or
``RedisCluster.retry`` on a cluster client. That is right for a read or an ``XADD`` (the event
id makes a re-sent event recognisable), and wrong for a command whose second run changes what
the first did. ``XREADGROUP ... >`` delivers *new* entries to the member on every run: if the
first copy ran (its reply was lost on a cut connection, or the server was paused and runs the
abandoned copy when it resumes), its entries wait in the member's pending list while the
client reports the second copy's reply as the only one. ``XAUTOCLAIM`` and ``XCLAIM`` move
entries the same way.

:func:`execute_once` sends such commands so that an error reaches the caller, who decides
(the consumer replays its own pending entries before it reads new ones), however the caller
built the client:

* one Redis: the commands go out in one round trip (:func:`cachebus.core._wire.round_trip`)
  that does not consult the connection's ``Retry``; a failure drops the connection, so it is
  never reused with an unread reply on it;
* a Redis Cluster: each command is sent with ``target_nodes`` set to the node serving
  ``key``, which redis-py never retries (its node connections have no retry of their own);
  a ``MOVED`` or ``ASK`` reply is still followed, since the node that sent it ran nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio

from cachebus.core._io import AsyncClient
from cachebus.core._wire import round_trip

__all__ = ["execute_once"]


async def execute_once(
    client: AsyncClient, commands: Sequence[Sequence[Any]], *, key: str, **options: Any
) -> list[Any]:
    """Send ``commands`` (all on ``key``'s node) once; their replies in order.

    As ``pipeline.execute(raise_on_error=False)``: an error *reply* is returned in its place as
    a ``ResponseError``; a connection error or timeout is raised, never retried. ``options``
    go to every command's reply callback (``parse_justid=True`` for ``XCLAIM ... JUSTID``).
    """
    if isinstance(client, redis.asyncio.RedisCluster):
        return await _on_cluster(client, commands, key, options)
    return await round_trip(client, commands, retry=False, **options)


async def _on_cluster(
    client: redis.asyncio.RedisCluster,
    commands: Sequence[Sequence[Any]],
    key: str,
    options: dict[str, Any],
) -> list[Any]:
    # One round trip per command here (a cluster pipeline retries as the client's retry says).
    await client.initialize()  # a no-op once the slot map is known
    replies: list[Any] = []
    for args in commands:
        node = client.get_node_from_key(key)
        try:
            replies.append(await client.execute_command(*args, target_nodes=node, **options))
        except redis.exceptions.ResponseError as exc:
            replies.append(exc)
    return replies
