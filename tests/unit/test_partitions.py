"""Cluster placement without a server: slots, partition tags, routing, co-located leases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_key_slot

from cachebus.contracts.errors import ContractError
from cachebus.contracts.keys import KeySpace, StreamKeys
from cachebus.contracts.partitions import (
    hashed_part,
    home_partition,
    key_slot,
    partition_of,
    partition_tag,
    slot_range,
)
from cachebus.core._cluster_io import plan_calls
from cachebus.producers._routing import Router, piece_event_id
from tests.harness.registry import REGISTRY

KEYISH = st.text(alphabet=st.sampled_from("ab{}:x1"), max_size=12)


@given(KEYISH)
def test_key_slot_agrees_with_redis_py(key: str) -> None:
    assert key_slot(key) == redis_key_slot(key.encode())
    assert key_slot(key) == key_slot(hashed_part(key))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 8, 16])
def test_each_partition_lands_in_the_middle_of_its_share_of_the_slots(count: int) -> None:
    for index in range(count):
        start, end = slot_range(index, count)
        slot = key_slot(partition_tag("inval", index, count))
        margin = (end - start) // 4
        assert start + margin <= slot < end - margin


def test_three_partitions_fall_on_the_three_primaries_of_an_even_split() -> None:
    # redis-cli --cluster create with 3 primaries: 0-5460, 5461-10922, 10923-16383.
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    keys = StreamKeys("cb", partitions=3)
    owners = []
    for part in keys.all_partitions():
        slot = key_slot(part.stream("inval"))
        owners.append(next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi))
    assert owners == [0, 1, 2]


def test_one_partitions_keys_share_a_slot_and_carry_its_tag() -> None:
    part = StreamKeys("cb", partitions=3).for_partition(1)
    names = [
        part.stream("inval"),
        part.epoch("inval"),
        part.group_meta("inval", "api"),
        part.dead_letter("inval", "api"),
    ]
    assert {key_slot(name) for name in names} == {key_slot(names[0])}
    assert all("{" + partition_tag("inval", 1, 3) + "}" in name for name in names)


def test_one_partition_keeps_the_historical_names() -> None:
    assert StreamKeys("cb").stream("inval") == "cb:stream:inval"
    assert StreamKeys("cb", partitions=1).for_partition(0).stream("inval") == "cb:stream:inval"
    assert StreamKeys("cb").group_meta("inval", "api") == "cb:group:inval:api"


def test_a_partitioned_layout_refuses_to_name_a_stream_without_a_partition() -> None:
    with pytest.raises(ContractError, match="for_partition") as info:
        StreamKeys("cb", partitions=3).stream("inval")
    assert info.value.rule == "stream.partition"
    with pytest.raises(ContractError, match="does not exist"):
        StreamKeys("cb", partitions=3, partition=3)
    with pytest.raises(ContractError, match="partitions must be"):
        StreamKeys("cb", partitions=0)


def test_tags_of_different_streams_never_collide() -> None:
    tags = {
        partition_tag(name, i, n)
        for name in ("a", "a.1", "a.1.2")
        for n in (1, 3, 12)
        for i in range(n)
    }
    assert len(tags) == sum(n for _ in range(3) for n in (1, 3, 12))


def test_routing_is_stable_and_spreads_keys() -> None:
    # Pinned values (CRC-32 of "namespace:id", then of the namespace, mod N): every producer,
    # in any process or language, must route alike; a per-process hash() would not.
    assert [partition_of("prices", str(i), 3) for i in range(12)] == [
        0, 0, 0, 0, 0, 2, 2, 1, 1, 1, 2, 1,
    ]  # fmt: skip
    assert (home_partition("prices", 3), home_partition("positions", 3)) == (2, 0)
    counts = [0, 0, 0]
    for i in range(3000):
        counts[partition_of("prices", str(i), 3)] += 1
    assert min(counts) > 800
    assert partition_of("prices", "x", 1) == 0 and home_partition("prices", 1) == 0


@given(st.text(min_size=1, max_size=30).filter(lambda s: not set(s) & {"\x00", "\r", "\n", "}"}))
def test_a_lease_shares_its_values_slot_whenever_the_id_has_no_stray_brace(ident: str) -> None:
    ks = KeySpace("cb", "svc", registry=REGISTRY)
    assert ks.lease_colocated("prices", ident)
    assert key_slot(ks.lease_key("prices", ident)) == key_slot(ks.key("prices", ident))


def test_leases_of_different_ids_are_different_keys() -> None:
    ks = KeySpace("cb", "svc", registry=REGISTRY)
    ids = ["1", "a{b}c", "a}b", "{x", "{}a", "cb:svc:prices:1"]
    assert len({ks.lease_key("prices", i) for i in ids}) == len(ids)
    assert not ks.lease_colocated("prices", "a}b")


def test_the_cluster_edge_splits_multi_key_commands_per_slot_and_folds_the_replies() -> None:
    keys = [f"k{i}" for i in range(20)]
    plan = plan_calls([("UNLINK", *keys), ("MGET", *keys), ("GET", "k1")])
    assert all(len({key_slot(k) for k in cmd[1:]}) == 1 for cmd in plan.commands)
    replies: list[object] = []
    for cmd in plan.commands:
        if cmd[0] == "UNLINK":
            replies.append(len(cmd) - 1)
        elif cmd[0] == "MGET":
            replies.append([f"v{k}" for k in cmd[1:]])
        else:
            replies.append("one")
    unlinked, values, one = plan.fold(replies)
    assert unlinked == 20
    assert values == [f"v{k}" for k in keys]
    assert one == "one"


def test_a_keys_event_spanning_partitions_is_split_with_stable_piece_ids() -> None:
    router = Router(StreamKeys("cb", partitions=3), "inval", None)
    ids = tuple(str(i) for i in range(30))
    payload = {"kind": "keys", "namespace": "prices", "event_id": "01ABC", "keys": ids}
    pieces = router.pieces([payload])
    assert len(pieces) == 3
    assert sorted(k for _, p in pieces for k in p["keys"]) == sorted(ids)
    assert [p["event_id"] for _, p in pieces] == [piece_event_id("01ABC", i) for i in range(3)]
    assert router.pieces([payload]) == pieces  # a retry re-sends the same pieces
    folded = router.fold([payload], [b"1-0", b"1-1", b"1-2"])
    assert folded == [b"0/1-0,1/1-1,2/1-2"]
    flush = {"kind": "flush", "namespace": "prices", "event_id": "01ABD"}
    assert router.partitions(flush) == [home_partition("prices", 3)]
    assert len(piece_event_id("x" * 64, 12)) == 64


def test_unlinks_of_values_and_their_leases_go_out_as_one_command_per_slot() -> None:
    ks = KeySpace("cb", "svc", registry=REGISTRY)
    data = [ks.key("prices", str(i)) for i in range(50)]
    leases = [ks.lease_key("prices", str(i)) for i in range(50)]
    plan = plan_calls([("UNLINK", *data), ("UNLINK", *leases)])
    slots = {key_slot(k) for k in data}
    assert len(plan.commands) == len(slots)  # not 2 per slot
    replies: list[object] = []
    for cmd in plan.commands:
        if cmd[0] == "UNLINK":  # a slot with keys of one call only
            replies.append(len(cmd) - 1)
        else:  # EVALSHA sha numkeys keys... counts...: pretend every value existed, no lease
            counts = [int(c) for c in cmd[3 + int(cmd[2]) :]]
            replies.append([counts[0], 0])
    assert plan.fold(replies) == [50, 0]
