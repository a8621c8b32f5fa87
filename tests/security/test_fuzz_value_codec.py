"""The value codec survives 100,000 arbitrary stored values with nothing but CodecError.

A cache value can be anything another writer put under the key (a service without cachebus,
a bug, an attacker with write access to the scope). Random bytes mostly stop at the header or
the CRC, so a third of the inputs are forged with a *correct* CRC around damaged or hostile
payloads: they reach zstd (with and without a dictionary, lying about their size) and JSON.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cachebus.contracts.errors import CodecError
from cachebus.core import ValueCodec
from cachebus.core._header import LEADS, U32, Decoded, DecodeFailure, varint
from cachebus.core.dictionary import Dictionary
from tests.security.fuzzing import mutate, run

TOTAL = 100_000
_MAGICLESS = zstandard.ZstdCompressor(write_content_size=True)


def _samples(n: int) -> list[bytes]:
    rng = random.Random(1)
    return [
        json.dumps(
            {"market": i, "price": rng.random(), "outcomes": ["yes", "no"] * (i % 7)}
        ).encode()
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def codec() -> ValueCodec:
    dictionary = Dictionary.train(_samples(400), size=2048)
    return ValueCodec(dictionaries={None: dictionary}, max_value_bytes=1 << 20)


def _frame(lead: bytes, generation: bytes, written_at: int, body: bytes) -> bytes:
    """A value with any header and body, and the CRC it needs to get past the check."""
    prefix = lead + generation + U32.pack(written_at & 0xFFFFFFFF)
    return prefix + U32.pack(zlib.crc32(body, zlib.crc32(prefix))) + body


def _zstd_body(rng: random.Random, payload: bytes) -> bytes:
    frame = _MAGICLESS.compress(payload)[4:]  # the codec stores magicless frames
    return mutate(rng, frame) if rng.random() < 0.5 else frame


def inputs(codec: ValueCodec, seed: int = 7) -> Iterator[bytes]:
    rng = random.Random(seed)
    values = [{"v": i, "text": "x" * (i * 90)} for i in range(30)] + [b"raw bytes", 3, [1]]
    valid = [codec.frame(codec.prepare(v, namespace="market"), rng.randint(0, 1 << 40))
             for v in values]  # fmt: skip
    dict_leads = [lead + U32.pack(d) for lead in (LEADS[(2, 0)], LEADS[(2, 1)])
                  for d in (*codec._by_id, 0, 0xFFFFFFFF)]  # fmt: skip
    plain_leads = [LEADS[(c, j)] for c in (0, 1) for j in (0, 1)] + [b"\xc6", b"\xcf", b"\x00"]
    payloads = [*_samples(20), b"[" * 2000, b"{}" * 10, b"\xff\xfe", b"1e999", b""]
    for i in range(TOTAL):
        kind = i % 3
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 400))
        elif kind == 1:
            yield mutate(rng, rng.choice(valid))
        else:
            lead = rng.choice(dict_leads if rng.random() < 0.4 else plain_leads)
            generation = rng.choice(
                [varint(rng.randint(0, 1 << 60)), b"\xff" * rng.randint(1, 12), b""]
            )
            payload = rng.choice(payloads)
            body = payload if lead[0] & 0x06 == 0 else _zstd_body(rng, payload)
            yield _frame(lead, generation, rng.getrandbits(32), body)


def test_decode_survives_100000_arbitrary_stored_values(codec: ValueCodec) -> None:
    run(inputs(codec), codec.decode, CodecError).check(TOTAL)  # type: ignore[arg-type]


def test_try_decode_never_raises_on_the_same_values(codec: ValueCodec) -> None:
    def check(data: object) -> None:
        result = codec.try_decode(data)  # type: ignore[arg-type]
        assert isinstance(result, Decoded | DecodeFailure)
        if isinstance(result, DecodeFailure):
            raise CodecError(result.message)

    run(inputs(codec, seed=8), check, CodecError).check(TOTAL)


def test_a_frame_lying_about_a_huge_size_is_refused_before_inflating(codec: ValueCodec) -> None:
    bomb = _MAGICLESS.compress(b"\x00" * (4 << 20))[4:]  # 4 MiB of zeros in ~150 bytes
    with pytest.raises(CodecError, match="over the"):
        codec.decode(_frame(LEADS[(1, 0)], varint(1), 0, bomb))


@settings(max_examples=300, deadline=None)
@given(
    compression=st.integers(0, 2),
    is_json=st.booleans(),
    generation=st.integers(0, 1 << 70),
    written_at=st.integers(0, (1 << 32) - 1),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    cut=st.integers(0, 8),
)
def test_near_miss_frames_decode_or_raise_only_codec_errors(
    codec: ValueCodec,
    compression: int,
    is_json: bool,
    generation: int,
    written_at: int,
    payload: bytes,
    cut: int,
) -> None:
    lead = LEADS[(compression, int(is_json))]
    if compression == 2:
        lead += U32.pack(next(iter(codec._by_id)))
    body = payload if compression == 0 else _MAGICLESS.compress(payload)[4:]
    body = body[: len(body) - cut] if cut else body  # a frame cut short, CRC still right
    try:
        decoded = codec.decode(_frame(lead, varint(generation), written_at, body))
    except CodecError:
        return
    assert decoded.generation == generation and decoded.written_at == written_at
