"""Every error reply of Redis 7.0-7.4 a consumer can meet maps to what the runtime does with it.

The replies are redis-py's own exceptions as its parser builds them from the reply text, so the
table is the reply line Redis sends, and what ``map_redis_errors`` makes of it.
"""

from __future__ import annotations

import pytest
import redis
from redis._parsers.base import BaseParser

from cachebus.consumers.replay import ReplayDue
from cachebus.contracts.errors import (
    AccessDenied,
    BackendError,
    BackendUnavailable,
    GroupMissingError,
    NotPrimary,
)
from cachebus.core.connection import map_redis_errors


def parsed(reply: str) -> Exception:
    """The exception redis-py raises for the error reply line ``reply``."""
    return BaseParser.parse_error(reply)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("reply", "mapped"),
    [
        ("NOGROUP No such key 'cb:stream:inval' or consumer group 'svc'", GroupMissingError),
        ("UNBLOCKED the stream key no longer exists", GroupMissingError),
        ("NOGROUP the consumer group this client was blocked on no longer exists",
         GroupMissingError),
        ("UNBLOCKED client unblocked via CLIENT UNBLOCK", BackendUnavailable),
        ("LOADING Redis is loading the dataset in memory", BackendUnavailable),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
         BackendUnavailable),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
         BackendUnavailable),
        ("READONLY You can't write against a read only replica.", NotPrimary),
        ("NOPERM User bot has no permissions to run the 'xreadgroup' command", AccessDenied),
        ("WRONGPASS invalid username-password pair or user is disabled.", AccessDenied),
        ("OOM command not allowed when used memory > 'maxmemory'.", BackendError),
        ("BUSYGROUP Consumer Group name already exists", BackendError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", BackendError),
    ],
)  # fmt: skip
def test_each_reply_maps_to_its_policy(reply: str, mapped: type[BackendError]) -> None:
    with pytest.raises(BackendError) as caught, map_redis_errors("XREADGROUP s", "stream Redis"):
        raise parsed(reply)
    assert type(caught.value) is mapped, f"{reply!r} -> {type(caught.value).__name__}"
    assert reply.split(" ", 1)[1][:20] in str(caught.value)


def test_unavailable_replies_are_not_mistaken_for_configuration_errors() -> None:
    # The runtime stops only on AccessDenied; everything else is retried.
    for reply in ("LOADING x", "BUSY x", "READONLY x", "OOM x", "UNBLOCKED x"):
        with pytest.raises(BackendError) as caught, map_redis_errors("op"):
            raise parsed(reply)
        assert not isinstance(caught.value, AccessDenied)
    with pytest.raises(BackendUnavailable), map_redis_errors("op"):
        raise redis.exceptions.TimeoutError("Timeout reading from socket")


def test_a_failure_owes_a_replay_now_and_once_more_after_the_next_read() -> None:
    replay = ReplayDue()
    assert replay.due and replay.blocks_readiness  # every start replays
    replay.settle(replay.begin())
    assert not replay.due
    replay.owe("stream error")
    token = replay.begin()
    replay.settle(token)
    assert not replay.due
    replay.read_new()  # the follow-up: one read later, in case the server ran a copy late
    assert replay.due and not replay.blocks_readiness
    replay.settle(replay.begin())
    replay.read_new()
    assert not replay.due


def test_a_failure_during_the_replay_owes_another() -> None:
    replay = ReplayDue()
    token = replay.begin()
    replay.owe("ack failed")  # while the replay ran
    replay.settle(token)
    assert replay.due
