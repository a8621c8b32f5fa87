"""Invalidation steps: exact keys (UNLINK), patterns (SCAN + UNLINK), namespace generations.

Every kind voids the ``get_or_set`` leases it covers (:mod:`cachebus.core.leases`), so a fill
that loaded before the invalidation is refused when it lands:

* Exact keys: the ids' leases are UNLINKed, then their values, in one round trip per
  ``unlink_batch`` ids. Leases go first: a fill landing between the two commands is refused,
  and one landing before both is removed with the values.
* Patterns: first the matching leases are voided (ZSCAN of the small lease index), then
  ``SCAN MATCH COUNT scan_count`` and UNLINK of what was found, the UNLINK riding in the next
  SCAN's round trip. Never KEYS: one SCAN call costs the server ~0.5 ms, KEYS on 1M keys
  ~105 ms (perf-baseline.md §a). Over ``max_keys`` matches it stops and flushes the namespace
  instead: past that size a generation bump is cheaper and just as correct.
* Namespace flush: the generation goes up by one, O(1) at any keyspace size; old values stop
  being visible at once and age out by TTL, and every lease of the namespace is void (a fill
  checks the generation it was taken under). The new generation is never below the current
  time in milliseconds, so if the generation key is lost (evicted under ``allkeys-*``), the
  counter restarts above every generation used before and old values cannot come back.
* Rate limit: with ``CacheConfig.max_deletes_per_second``, each UNLINK first reserves its keys
  and the step yields a :class:`~cachebus.core._io.Pause` for the wait
  (:mod:`cachebus.core.ratelimit`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.keys import KeyRef
from cachebus.core._core import CacheCore
from cachebus.core._io import Batch, Pause, Script, Step
from cachebus.core.leases import void_pattern_step

__all__ = ["PatternResult", "flush_step", "pattern_step", "unlink_ids_step", "unlink_refs_step"]

#: INCR the generation, but never below ARGV[1] (ms since epoch); repair a non-integer value.
FLUSH = Script(
    """
local raw = redis.call('GET', KEYS[1])
local cur = 0
if raw then cur = tonumber(raw) or -1 end
if cur >= 0 and cur == math.floor(cur) and cur + 1 >= tonumber(ARGV[1]) then
  return redis.call('INCR', KEYS[1])
end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
"""
)


@dataclass(frozen=True, slots=True)
class PatternResult:
    """What ``invalidate_pattern`` did: keys removed, SCAN calls made, and whether it hit
    ``max_keys`` and flushed the whole namespace instead (``escalated``)."""

    deleted: int
    scanned_calls: int
    escalated: bool
    generation: int | None = None


def _paced(core: CacheCore, count: int) -> Generator[Pause, list[Any], None]:
    """Wait for the delete rate limit, if any, before deleting ``count`` keys."""
    wait = core.reserve_deletes(count)
    if wait > 0:
        yield Pause(wait)


def unlink_refs_step(core: CacheCore, refs: Iterable[KeyRef]) -> Step[int]:
    """UNLINK the refs' keys and leases; returns how many cached values were removed."""
    ks = core.keyspace
    listed = list(refs)
    data = [ks.key(r.namespace, r.id) for r in listed]
    leases = [ks.lease_key(r.namespace, r.id) for r in listed]
    return _unlink(core, data, leases)


def unlink_ids_step(core: CacheCore, ids: Mapping[str, Iterable[str]]) -> Step[int]:
    """UNLINK the keys and leases of ``{namespace: ids}``: a consumer batch, built in bulk."""
    data: list[str] = []
    leases: list[str] = []
    for namespace, idents in ids.items():
        keys, lease_keys = core.keyspace.key_pairs(namespace, idents)
        data += keys
        leases += lease_keys
    return _unlink(core, data, leases)


def _unlink(core: CacheCore, data: list[str], leases: list[str]) -> Step[int]:
    """``data[i]`` and ``leases[i]`` belong to the same item."""
    removed = 0
    size = core.config.unlink_batch
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        yield from _paced(core, len(chunk))
        replies = yield Batch(
            [("UNLINK", *leases[start : start + size]), ("UNLINK", *chunk)],
            operation=f"UNLINK {len(chunk)} keys",
        )
        removed += int(replies[1])
    core.stats.invalidations += removed
    return removed


def flush_step(core: CacheCore, namespaces: Sequence[str]) -> Step[list[int]]:
    """Bump the generation of each namespace, all in one round trip."""
    ks = core.keyspace
    keys = [ks.generation_key(ns) for ns in namespaces]
    return _flush(core, list(namespaces), keys)


def _flush(core: CacheCore, namespaces: list[str], keys: list[str]) -> Step[list[int]]:
    floor = int(time.time() * 1000)
    replies = yield Batch(
        [FLUSH.call([key], [floor]) for key in keys],
        operation=f"flush {','.join(namespaces)}",
    )
    generations = [int(reply) for reply in replies]
    for ns, generation in zip(namespaces, generations, strict=True):
        core.remember_generation(ns, generation)
    core.stats.flushes += len(namespaces)
    return generations


def pattern_step(
    core: CacheCore, namespace: str, pattern: str, max_keys: int | None = None
) -> Step[PatternResult]:
    match = core.keyspace.match(namespace, pattern)  # validates; refuses a bare '*'
    limit = core.config.pattern_max_keys if max_keys is None else max_keys
    if limit < 1:
        raise ConfigError(f"max_keys must be at least 1, got {limit}")
    return _pattern(core, namespace, pattern, match, limit)


def _pattern(
    core: CacheCore, namespace: str, pattern: str, match: str, limit: int
) -> Step[PatternResult]:
    cfg = core.config
    # Before the values: a fill that lands while the SCAN runs must find its lease gone.
    yield from void_pattern_step(core, namespace, pattern)
    cursor = 0
    calls = 0
    found = 0
    deleted = 0
    pending: list[bytes | str] = []
    while True:
        batch: list[tuple[object, ...]] = []
        if len(pending) >= cfg.unlink_batch:
            yield from _paced(core, cfg.unlink_batch)
            batch.append(("UNLINK", *pending[: cfg.unlink_batch]))
            del pending[: cfg.unlink_batch]
        batch.append(("SCAN", cursor, "MATCH", match, "COUNT", cfg.scan_count))
        replies = yield Batch(batch, operation=f"SCAN MATCH {match}")
        if len(replies) == 2:
            deleted += int(replies[0])
        cursor, keys = replies[-1]
        calls += 1
        found += len(keys)
        pending.extend(keys)
        if found > limit:
            # Past the cap a generation bump is cheaper than finishing the scan.
            (generation,) = yield from _flush(
                core, [namespace], [core.keyspace.generation_key(namespace)]
            )
            core.stats.invalidations += deleted
            core.stats.pattern_invalidations += 1
            core.stats.escalations += 1
            return PatternResult(deleted, calls, True, generation)
        if int(cursor) == 0:
            break
    for start in range(0, len(pending), cfg.unlink_batch):
        chunk = pending[start : start + cfg.unlink_batch]
        yield from _paced(core, len(chunk))
        (count,) = yield Batch(
            [("UNLINK", *chunk)],
            operation=f"UNLINK {match}",
        )
        deleted += int(count)
    core.stats.invalidations += deleted
    core.stats.pattern_invalidations += 1
    return PatternResult(deleted, calls, False)
