"""The lean round trip (cachebus.core._wire): a pipeline's replies, failures and connection care."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cachebus.core._wire import round_trip
from cachebus.testing import RedisServer


def _client(url: str, retries: int) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url, socket_timeout=5, retry=Retry(NoBackoff(), retries))


async def _pipeline(
    client: redis.asyncio.Redis, commands: list[tuple[object, ...]]
) -> list[object]:
    pipe = client.pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args)
    return list(await pipe.execute(raise_on_error=False))


def _shape(replies: list[object]) -> list[object]:
    return [type(r).__name__ + str(r) if isinstance(r, Exception) else r for r in replies]


async def test_replies_come_back_as_a_pipeline_gives_them(redis_url: str, prefix: str) -> None:
    client = _client(redis_url, 0)
    commands: list[tuple[object, ...]] = [
        ("SET", f"{prefix}:s", "v"),
        ("HSET", f"{prefix}:h", "a", "1", "b", "2"),
        ("HGETALL", f"{prefix}:h"),  # a reply callback: a dict
        ("LPUSH", f"{prefix}:s", "x"),  # WRONGTYPE: an error reply, in its slot
        ("XINFO STREAM", f"{prefix}:missing"),  # a two-word name, an error reply
        (b"GET", f"{prefix}:s"),  # a bytes name: no callback
        ("UNLINK", f"{prefix}:s", f"{prefix}:h"),
    ]
    ours = await round_trip(client, commands)
    await client.delete(f"{prefix}:s", f"{prefix}:h")
    theirs = await _pipeline(client, commands)
    assert _shape(ours) == _shape(theirs)
    assert ours[0] is True and ours[2] == {b"a": b"1", b"b": b"2"} and ours[-1] == 2
    assert isinstance(ours[3], redis.exceptions.ResponseError)
    assert await client.ping()  # the connection is in step after the error replies
    await client.aclose()


async def test_a_cancelled_round_trip_drops_its_connection(redis_server: RedisServer) -> None:
    client = _client(redis_server.url, 0)
    watcher = redis.asyncio.Redis.from_url(redis_server.url, retry=None)
    call = asyncio.ensure_future(round_trip(client, [("BLPOP", "q", 10)]))
    await _blocked(watcher)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # Pooled as it was, the connection would still be blocked on the server, its reply due
    # to whichever caller borrowed it next. Closed, the server forgets the BLPOP.
    for _ in range(500):
        if not any(c.get("cmd") == "blpop" for c in await watcher.client_list()):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the cancelled BLPOP's connection is still open")
    await watcher.rpush("q", "late")
    assert await round_trip(client, [("ECHO", "mine"), ("LPOP", "q")]) == [b"mine", b"late"]
    await client.aclose()
    await watcher.aclose()


async def _blocked(killer: redis.asyncio.Redis) -> int:
    """The id of the connection blocked in BLPOP (waited for as a condition, bounded)."""
    for _ in range(500):
        for info in await killer.client_list():
            if info.get("cmd") == "blpop":
                return int(info["id"])
        await asyncio.sleep(0.01)
    pytest.fail("the BLPOP never reached the server")


async def test_a_connection_lost_mid_call_is_retried_as_the_connection_says_unless_told_not_to(
    redis_server: RedisServer,
) -> None:
    killer = redis.asyncio.Redis.from_url(redis_server.url, retry=None)
    client = _client(redis_server.url, 1)  # the connection's Retry allows one more attempt
    for retry in (True, False):
        call = asyncio.ensure_future(round_trip(client, [("BLPOP", "q", 10)], retry=retry))
        await killer.client_kill_filter(_id=await _blocked(killer))
        if retry:  # sent again on a new connection: it blocks again until a push
            await _blocked(killer)
            await killer.rpush("q", "x")
            assert await asyncio.wait_for(call, 5) == [(b"q", b"x")]
        else:
            with pytest.raises(redis.exceptions.ConnectionError):
                await asyncio.wait_for(call, 5)
        assert await round_trip(client, [("PING",)]) == [True]  # a new connection serves
    await client.aclose()
    await killer.aclose()
