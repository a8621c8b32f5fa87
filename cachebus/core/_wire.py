"""One round trip on a pooled connection, without redis-py's pipeline machinery.

A consumer's wake-up costs three round trips (the read, the cache's UNLINKs, the XACK). Sent as
redis-py pipelines, most of the member's CPU per wake-up went to the pipeline rather than to the
commands (a cProfile of a member woken 2,000 times by one event: about 70 %): a ``Pipeline``
built and reset per round trip, redis-py 8's per-command preparation for hash field imports,
observability hooks that look up the pool's name several times per call. None of it is needed
for commands we build ourselves, with no transaction, no WATCH, no hash field import.

:func:`round_trip` does what the pipeline does and nothing more: takes a connection from the
client's pool, writes every command in one packed write (redis-py's own timed write: writes
that leave together stay together, which the server's event loop notices), reads one reply per
command through the client's ``parse_response`` (so every reply callback, RESP2/RESP3 choice
and decoding setting is redis-py's), error replies in their slots, and gives the connection
back. Failures are redis-py's too: the connection's ``Retry`` re-sends the round trip on a
connection error or timeout when ``retry`` is true, and the connection is dropped (never
pooled with unread replies on it) on any failure or cancellation before the last reply.

For one Redis (``redis.asyncio.Redis``), as redis-py's own pipelines: their connections come
from the client's pool, even on a ``single_connection_client``. A cluster client routes by key
and has its own path (:mod:`cachebus.core._cluster_io`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

__all__ = ["round_trip"]


async def _exchange(
    client: redis.asyncio.Redis,
    conn: Connection,
    commands: Sequence[Sequence[Any]],
    options: dict[str, Any],
) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands(commands))
    replies: list[Any] = []
    append = replies.append
    parse = client.parse_response
    try:
        for args in commands:
            try:
                append(await parse(conn, args[0], **options))
            except ResponseError as exc:
                append(exc)
    except BaseException:
        # A callback raised or the caller was cancelled: the rest of the replies are still on
        # the socket, so the connection must not go back to the pool as it is.
        await conn.disconnect(nowait=True)
        raise
    return replies


async def round_trip(
    client: redis.asyncio.Redis,
    commands: Sequence[Sequence[Any]],
    *,
    retry: bool = True,
    **options: Any,
) -> list[Any]:
    """Send ``commands`` in one write; their replies in order, error replies in place.

    As ``pipeline(transaction=False).execute(raise_on_error=False)``. ``retry=False`` sends
    them once whatever the connection's ``Retry`` says (see :mod:`cachebus.core.once`);
    ``options`` go to every reply's callback.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        if not retry:
            return await _exchange(client, conn, commands, options)

        async def attempt() -> list[Any]:
            return await _exchange(client, conn, commands, options)

        async def failed(error: Exception) -> None:
            await conn.disconnect()

        result: list[Any] = await conn.retry.call_with_retry(attempt, failed)
        return result
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
