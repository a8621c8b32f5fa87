"""Redis Cluster placement: hash slots, hash tags, and how a stream is split into partitions.

Redis Cluster puts a key in one of 16384 *slots*: CRC16 of the key, or of the text between the
first ``{`` and the next ``}`` when that text is not empty (the *hash tag*). Keys that must be
touched by one command or one Lua script must share a slot; keys that should spread over the
shards must not.

A logical stream (``inval``) is split into ``count`` partitions. Partition ``i``'s keys (stream,
epoch, group meta, dead letters) all carry the hash tag :func:`partition_tag` so they live in
one slot, and the tag is chosen so that partition ``i``'s slot falls in the middle half of the
``i``-th ``1/count`` of the slot space: with the even slot split of ``redis-cli --cluster
create``, ``count`` partitions over ``count`` primaries put one partition on each primary (and
``2 * count`` partitions two on each). One partition (``count == 1``) keeps the historical,
untagged key names.

Routing, shared by every producer so that all of them agree:

* a key event goes to :func:`partition_of` ``(namespace, id)``: every event about one key lands
  in the same partition, in the order it was added, so the order per key holds;
* a pattern or namespace flush goes to the namespace's :func:`home_partition`: it is applied
  once per consumer group (not once per partition, which would SCAN the whole cluster N
  times). Invalidations commute (a delete or a generation bump gives the same result in any
  order), so its order relative to key events of other partitions changes nothing cached.
"""

from __future__ import annotations

import binascii
import functools
import zlib

__all__ = [
    "SLOTS",
    "crc16",
    "hashed_part",
    "home_partition",
    "key_slot",
    "partition_of",
    "partition_tag",
    "slot_range",
]

#: Hash slots of a Redis Cluster.
SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    return binascii.crc_hqx(data, 0)


def hashed_part(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the hash tag if there is a non-empty one."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` (same answer as ``CLUSTER KEYSLOT``)."""
    data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def slot_range(index: int, count: int) -> tuple[int, int]:
    """The ``index``-th of ``count`` equal shares of the slot space, ``[start, end)``."""
    return index * SLOTS // count, (index + 1) * SLOTS // count


@functools.lru_cache(maxsize=1024)
def partition_tag(stream: str, index: int, count: int) -> str:
    """The hash tag (without braces) of partition ``index`` of ``count`` of ``stream``.

    ``{stream}.{index}`` when its slot lies in the middle half of the partition's share of the
    slot space, else the first ``{stream}.{index}~{n}`` that does (``~`` never appears in a
    stream name, so tags of different streams cannot collide). Deterministic: every process
    computes the same tags.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"partition {index} of {count} does not exist")
    start, end = slot_range(index, count)
    margin = (end - start) // 4
    low, high = start + margin, end - margin
    tag = f"{stream}.{index}"
    salt = 0
    while not low <= key_slot(tag) < high:
        salt += 1
        tag = f"{stream}.{index}~{salt}"
    return tag


def partition_of(namespace: str, ident: str, count: int) -> int:
    """The partition that carries every key event about ``(namespace, ident)``."""
    if count == 1:
        return 0
    return zlib.crc32(f"{namespace}:{ident}".encode("utf-8", "surrogatepass")) % count


def home_partition(namespace: str, count: int) -> int:
    """The partition that carries the pattern and flush events of ``namespace``."""
    if count == 1:
        return 0
    return zlib.crc32(namespace.encode()) % count
