"""The lease that guards a ``get_or_set`` fill, and how every invalidation voids it.

A slow fill (load old data, then write it) must never land after an invalidation of its key:
that is the race that leaves a stale value until its TTL (Facebook's memcache leases). A fill
is stored only if, when it lands (one Lua script, so nothing runs in between):

1. the lease key still holds the filler's token. Exact invalidations UNLINK it; a lease that
   expired mid-load, or was evicted, reads as gone: refused;
2. the id is still listed in the namespace's lease index (a sorted set of ids by expiry).
   Pattern invalidations remove the ids matching their glob (``ZSCAN MATCH``, the same glob
   rules as ``SCAN``) and UNLINK those leases *before* they scan for values; an index that was
   evicted lists nothing: refused;
3. the namespace generation is still the one the lease was taken under. Flushes change it,
   so they void every lease of the namespace in O(1); a generation key that was evicted
   reads as missing: refused.

The guard lives in the lease, the index and the generation, never in the value, so evicting the
value changes nothing. Every way a piece of the guard can vanish refuses the fill: a refused
fill costs one miss, a wrong one serves stale data until its TTL.

On a Redis Cluster a script may only touch one slot, and the index and the generation key live
in the namespace's slot, not the value's. There the fill script checks the lease alone (lease
and value share a slot, see ``KeySpace.lease_key``), which still refuses every late fill:
exact and pattern invalidations UNLINK the lease itself (a pattern finds it through the index),
and a fill after a flush writes its value under the generation taken before the flush, which
every read then sees as a miss. The index entry is added before the lease is taken, so a load
whose lease a pattern invalidation could not find started after that invalidation began.

Taking the lease also creates the generation key if it is missing, at the current time in
milliseconds (as a flush would): a generation is then always a value Redis holds, and a value
written under it can never look current once that key is lost.
"""

from __future__ import annotations

from typing import Any

from cachebus.core._core import CacheCore
from cachebus.core._io import Batch, Script, ScriptCall, Step

__all__ = [
    "ACQUIRE",
    "FILL",
    "RELEASE",
    "FillOutcome",
    "acquire_batch",
    "acquire_call",
    "fill_batch",
    "fill_call",
    "parse_acquire",
    "release_batch",
    "release_call",
    "void_pattern_step",
]

#: KEYS lease, index, generation; ARGV token, px, id, floor ms. Returns {acquired, generation}.
ACQUIRE = Script(
    """
local gen = redis.call('GET', KEYS[3])
if not gen then
  gen = ARGV[4]
  redis.call('SET', KEYS[3], gen)
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, gen}
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local px = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms)
redis.call('ZADD', KEYS[2], ms + px, ARGV[3])
if redis.call('PTTL', KEYS[2]) < px then
  redis.call('PEXPIRE', KEYS[2], px)
end
return {1, gen}
"""
)

#: KEYS lease, index, generation, value; ARGV token, id, generation, data, px.
#: Returns 1 stored, 0 lease gone, -1 id no longer listed, -2 generation changed or gone.
FILL = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local listed = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if not listed then
  return -1
end
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return -2
end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
return 1
"""
)

#: Compare-and-delete: never drop a lease another process took after ours expired.
RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


#: Cluster: KEYS index; ARGV id, px. The index part of ACQUIRE (one slot).
INDEX_LEASE = Script(
    """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local px = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
redis.call('ZADD', KEYS[1], ms + px, ARGV[1])
if redis.call('PTTL', KEYS[1]) < px then
  redis.call('PEXPIRE', KEYS[1], px)
end
return 1
"""
)

#: Cluster: KEYS lease, value (one slot); ARGV token, data, px. 1 stored, 0 lease gone.
FILL_COLOCATED = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""
)

#: Cluster: KEYS lease; ARGV token. Compare-and-delete.
RELEASE_COLOCATED = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


class FillOutcome:
    """Replies of :data:`FILL`."""

    STORED = 1
    LEASE_LOST = 0
    UNLISTED = -1
    FLUSHED = -2


def acquire_call(
    core: CacheCore, namespace: str, ident: str, token: str, px: int, floor_ms: int
) -> ScriptCall:
    ks = core.keyspace
    keys = [
        ks.lease_key(namespace, ident),
        ks.lease_index_key(namespace),
        ks.generation_key(namespace),
    ]
    return ACQUIRE.call(keys, [token, px, ident, floor_ms])


def fill_call(
    core: CacheCore,
    namespace: str,
    ident: str,
    token: str,
    generation: Any,
    data: bytes,
    px: int,
) -> ScriptCall:
    ks = core.keyspace
    keys = [
        ks.lease_key(namespace, ident),
        ks.lease_index_key(namespace),
        ks.generation_key(namespace),
        ks.key(namespace, ident),
    ]
    return FILL.call(keys, [token, ident, generation, data, px])


def release_call(core: CacheCore, namespace: str, ident: str, token: str) -> ScriptCall:
    ks = core.keyspace
    keys = [ks.lease_key(namespace, ident), ks.lease_index_key(namespace)]
    return RELEASE.call(keys, [token, ident])


def acquire_batch(
    core: CacheCore, namespace: str, ident: str, token: str, px: int, floor_ms: int
) -> Batch:
    """Take the lease (and create a missing generation); see :func:`parse_acquire`."""
    operation = f"lease {namespace}:{ident}"
    if not core.cluster:
        return Batch([acquire_call(core, namespace, ident, token, px, floor_ms)], operation)
    ks = core.keyspace
    generation = ks.generation_key(namespace)
    return Batch(
        [
            ("SET", generation, floor_ms, "NX"),
            INDEX_LEASE.call([ks.lease_index_key(namespace)], [ident, px]),
            ("SET", ks.lease_key(namespace, ident), token, "NX", "PX", px),
            ("GET", generation),
        ],
        operation,
    )


def parse_acquire(core: CacheCore, replies: list[Any]) -> tuple[bool, Any]:
    """``(acquired, generation)`` from the replies of :func:`acquire_batch`."""
    if not core.cluster:
        acquired, generation = replies[0]
        return bool(acquired), generation
    return bool(replies[2]), replies[3]


def fill_batch(
    core: CacheCore,
    namespace: str,
    ident: str,
    token: str,
    generation: Any,
    data: bytes,
    px: int,
) -> Batch:
    """Store ``data`` if the lease still stands; the first reply is a :class:`FillOutcome`."""
    operation = f"fill {namespace}:{ident}"
    if not core.cluster:
        return Batch([fill_call(core, namespace, ident, token, generation, data, px)], operation)
    ks = core.keyspace
    lease = ks.lease_key(namespace, ident)
    return Batch(
        [
            FILL_COLOCATED.call([lease, ks.key(namespace, ident)], [token, data, px]),
            ("ZREM", ks.lease_index_key(namespace), ident),
        ],
        operation,
    )


def release_batch(core: CacheCore, namespace: str, ident: str, token: str) -> Batch:
    operation = f"release {namespace}:{ident}"
    if not core.cluster:
        return Batch([release_call(core, namespace, ident, token)], operation)
    ks = core.keyspace
    return Batch(
        [
            RELEASE_COLOCATED.call([ks.lease_key(namespace, ident)], [token]),
            ("ZREM", ks.lease_index_key(namespace), ident),
        ],
        operation,
    )


def void_pattern_step(core: CacheCore, namespace: str, pattern: str) -> Step[int]:
    """Void the outstanding leases whose id matches ``pattern``; returns how many.

    The index holds only loads in flight, so this is a few small calls whatever the size of
    the keyspace. A lease taken after the ZSCAN passed is for a load that started after this
    invalidation did, which reads the new data: it needs no voiding.
    """
    ks = core.keyspace
    index = ks.lease_index_key(namespace)
    cursor: Any = 0
    voided = 0
    while True:
        (reply,) = yield Batch(
            [("ZSCAN", index, cursor, "MATCH", pattern, "COUNT", core.config.scan_count)],
            operation=f"ZSCAN {index}",
        )
        cursor, members = reply
        ids = [_member(item) for item in members]
        if ids:
            leases = [ks.lease_key(namespace, ident) for ident in ids]
            # The ids leave the index first: a fill landing between the two is refused anyway.
            yield Batch(
                [("ZREM", index, *ids), ("UNLINK", *leases)],
                operation=f"void {len(ids)} leases of {namespace}",
            )
            voided += len(ids)
        if int(cursor) == 0:
            return voided


def _member(item: Any) -> str:
    # redis-py parses ZSCAN into (member, score) pairs; a raw reply would be flat.
    member = item[0] if isinstance(item, tuple | list) else item
    return member.decode() if isinstance(member, bytes) else str(member)
