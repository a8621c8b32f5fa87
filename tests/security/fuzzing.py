"""A small seeded mutation fuzzer: reproducible, fast, no extra dependency.

Byte-level mutations (bit flips, truncation, insertion, deletion, duplication, splicing of
"interesting" tokens) of valid seeds reach deeper than random bytes alone, which most decoders
refuse at the first byte. Each run is seeded, so a failure names the input that caused it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

INTERESTING = (
    b"", b"\x00", b"\xff", b"\xc0", b"\x80" * 11, b'"', b"\\", b"\\u0000", b"\\ud800", b"{", b"}",
    b"[", b"]", b"[" * 300, b",", b":", b"null", b"true", b"1e999", b"-0", b"NaN",
    b"18446744073709551616", b"-9223372036854775809", b'"kind"', b'"flush"', b'"keys"',
    b'"pattern"', b'"*"', b'"data"', b'"headers"', b"\xe2\x80\xae", b"\r\n", b"\x89BIN\r\n\x1a\n",
)  # fmt: skip


def mutate(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    """``data`` with 1-3 random byte-level mutations."""
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 3)):
        op = rng.randrange(6)
        size = len(out)
        at = rng.randint(0, size)
        if op == 0 and size:
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(size)
                out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[at:]
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            del out[at : at + rng.randint(1, 32)]
        elif op == 4 and size:
            start = rng.randrange(size)
            out[at:at] = out[start : start + rng.randint(1, 64)]
        else:
            out[at : at + rng.randint(0, 4)] = rng.choice(INTERESTING)
    return bytes(out)


@dataclass
class Outcome:
    """What a fuzz run saw: how many inputs each way, and the first unexpected exceptions."""

    ran: int = 0
    accepted: int = 0
    refused: int = 0
    unexpected: list[tuple[int, str]] = field(default_factory=list)

    def check(self, expected_total: int) -> None:
        assert not self.unexpected, f"unexpected exceptions (input index, error): {self.unexpected}"
        assert self.ran == expected_total
        # Both outcomes must occur, or the fuzzer never reached the decoder's happy path
        # (or never hurt it): either way it would prove little.
        assert self.accepted > 0 and self.refused > 0, (self.accepted, self.refused)


def run(
    inputs: Iterable[object],
    decode: Callable[[object], object],
    allowed: type[BaseException] | tuple[type[BaseException], ...],
) -> Outcome:
    outcome = Outcome()
    for index, value in enumerate(inputs):
        outcome.ran += 1
        try:
            decode(value)
        except allowed:
            outcome.refused += 1
        except Exception as exc:  # the defect this fuzzer looks for
            if len(outcome.unexpected) < 5:
                outcome.unexpected.append((index, f"{type(exc).__name__}: {exc}"[:300]))
        else:
            outcome.accepted += 1
    return outcome
