"""Event ids: sortable, unique, ULID-shaped (26 Crockford base32 characters).

An id is a 48-bit unix-millisecond timestamp followed by 80 bits that are random for the first
id of a millisecond and incremented for the next ones, so ids made by one process sort in the
order they were made, and ids from different processes sort by time. Uniqueness, not secrecy,
is the point: a private ``random.Random`` (seeded from the OS, reseeded in forked children)
costs no system call per id, unlike ``os.urandom``. The id is chosen once,
when the event is built: a retry re-sends the same id, which is what makes duplicates harmless.
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = [
    "EVENT_ID_LENGTH",
    "derived_event_id",
    "event_id_time_ms",
    "new_event_id",
    "next_event_id",
]

#: Length of the ids made here (other producers may use other shapes, see ``rules``).
EVENT_ID_LENGTH = 26

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(_CROCKFORD)}
# Two characters per 10 bits: encoding costs one lookup per 10 bits, no per-bit work.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_TIME_LIMIT = 1 << 48

_lock = threading.Lock()
_rng = random.Random()  # our own generator: seeded from os.urandom, reseeded after fork
_last_ms = -1
_last_random = 0
# Within one millisecond only the low bits change: the encoded prefixes are cached.
_time_text = ""
_high = -1
_high_text = ""


def _encode(value: int, pairs: int) -> str:
    return "".join(_PAIRS[(value >> shift) & 0x3FF] for shift in range((pairs - 1) * 10, -1, -10))


def _reset_after_fork() -> None:
    # A forked child must not continue its parent's sequence inside the same millisecond.
    global _last_ms, _last_random, _high
    _last_ms = -1
    _last_random = 0
    _high = -1
    _rng.seed()


os.register_at_fork(after_in_child=_reset_after_fork)


def new_event_id() -> str:
    """A new id, greater than every id this process made before (even if the clock steps back)."""
    return next_event_id()[0]


def next_event_id() -> tuple[str, int]:
    """A new id and the unix millisecond it encodes (use it as the event's creation time)."""
    global _last_ms, _last_random, _time_text, _high, _high_text
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            ms = now_ms
            rand = _rng.getrandbits(_RANDOM_BITS)
        else:
            ms = _last_ms
            rand = _last_random + 1
            if rand >= _RANDOM_LIMIT:  # 2**80 ids in one millisecond: borrow the next one
                ms += 1
                rand = _rng.getrandbits(_RANDOM_BITS)
        if ms != _last_ms:
            _time_text = _encode(ms % _TIME_LIMIT, 5)
        _last_ms = ms
        _last_random = rand
        if rand >> 10 != _high:
            _high = rand >> 10
            _high_text = _encode(_high, 7)
        return _time_text + _high_text + _PAIRS[rand & 0x3FF], ms


def derived_event_id(ms: int, value: int) -> str:
    """An id of the same shape whose 80 low bits are ``value`` instead of random: a producer
    that must make the *same* id again after a crash derives it from its source (the
    commit-log relay: a commit's LSN and the event's index in it)."""
    if not 0 <= value < _RANDOM_LIMIT:
        raise ValueError(f"value must fit {_RANDOM_BITS} bits")
    return _encode(ms % _TIME_LIMIT, 5) + _encode(value, 8)


def event_id_time_ms(event_id: str) -> int | None:
    """The creation time encoded in an id made by :func:`new_event_id`; None for other shapes."""
    if len(event_id) != EVENT_ID_LENGTH:
        return None
    value = 0
    for ch in event_id[:10]:
        digit = _VALUE.get(ch)
        if digit is None:
            return None
        value = value * 32 + digit
    return value
