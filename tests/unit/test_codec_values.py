"""The value codec: header, compression threshold, caps, and every way a value can be bad."""

from __future__ import annotations

import os
import random
import struct
import zlib

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from cachebus.bench._samples import market_json
from cachebus.contracts.errors import CodecError
from cachebus.core.codec import Compression, DecodeFailure, ValueCodec

codec = ValueCodec()


def test_small_values_stay_raw_and_large_ones_are_zstd_compressed() -> None:
    small = codec.decode(codec.encode({"a": 1}, 7))
    assert small.compression is Compression.RAW and small.value == {"a": 1}
    big_json = market_json(10_240)
    stored = codec.encode(big_json, 7)
    assert codec.decode(stored).compression is Compression.ZSTD
    assert len(big_json) / len(stored) > 2.5


def test_bytes_come_back_as_bytes_and_json_as_python_values() -> None:
    assert codec.decode(codec.encode(b"\x00\xffraw", 1)).value == b"\x00\xffraw"
    assert codec.decode(codec.encode("text", 1)).value == "text"
    assert codec.decode(codec.encode([1, 2.5, None, True], 1)).value == [1, 2.5, None, True]


def test_the_header_names_the_generation_and_the_write_time() -> None:
    decoded = codec.decode(codec.encode({"x": 1}, 1_795_000_000_123, now=1_700_000_000))
    assert decoded.generation == 1_795_000_000_123
    assert decoded.written_at == 1_700_000_000


def test_incompressible_bytes_are_stored_raw_rather_than_grown() -> None:
    noise = os.urandom(50_000)
    decoded = codec.decode(codec.encode(noise, 1))
    assert decoded.compression is Compression.RAW and decoded.value == noise


def test_a_truncated_value_is_detected_even_when_it_still_parses() -> None:
    stored = codec.encode(123456789, 1)  # raw JSON: its truncation '1234567' parses too
    failure = codec.try_decode(stored[:-2])
    assert isinstance(failure, DecodeFailure) and failure.reason == "corrupt"


def test_a_flipped_bit_anywhere_is_detected() -> None:
    stored = bytearray(codec.encode(market_json(4_000), 3))
    for position in (2, len(stored) // 2, len(stored) - 1):
        damaged = bytearray(stored)
        damaged[position] ^= 0x10
        result = codec.try_decode(bytes(damaged))
        assert isinstance(result, DecodeFailure), position


def test_values_that_are_not_ours_name_no_codec() -> None:
    for foreign in (b'{"plain": "json"}', b"x" * 45, b"\xc7" + b"\x00" * 20):
        result = codec.try_decode(foreign)
        assert isinstance(result, DecodeFailure)
        assert result.reason in {"unknown_codec", "corrupt"}
    assert codec.try_decode(b'{"plain": "json"}').reason == "unknown_codec"  # type: ignore[union-attr]


def test_explicit_decode_raises_codec_error_saying_what_is_wrong() -> None:
    with pytest.raises(CodecError, match="checksum"):
        codec.decode(codec.encode("abc", 1)[:-1])


def test_oversize_values_are_refused_on_write_with_the_cap_in_the_message() -> None:
    small_cap = ValueCodec(max_value_bytes=1000)
    with pytest.raises(CodecError, match=r"2000 bytes; the cache's cap is 1000"):
        small_cap.encode(b"x" * 2000, 1)


def test_a_value_over_the_readers_cap_is_an_oversize_miss() -> None:
    stored = ValueCodec().encode(b"y" * 50_000, 1)
    result = ValueCodec(max_value_bytes=10_000).try_decode(stored)
    assert isinstance(result, DecodeFailure) and result.reason == "oversize"


def test_a_hostile_frame_claiming_a_huge_size_is_refused_before_inflating() -> None:
    # A zstd frame header that claims 4 GiB of content, with a valid CRC around it.
    params = zstandard.ZstdCompressionParameters.from_level(
        1, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=True
    )
    frame = bytearray(zstandard.ZstdCompressor(compression_params=params).compress(b"a" * 70_000))
    # Rewrite the frame header's 4-byte content-size field so it claims 4 GiB.
    claim = bytearray(frame)
    descriptor = claim[0]
    assert descriptor >> 6 == 2  # 4-byte content-size field
    offset = 1 if descriptor & 0x20 else 2  # single-segment frames have no window byte
    claim[offset : offset + 4] = struct.pack("<I", 0xFFFF_FFFF)
    prefix = bytes((0xC0 | 1 << 1,)) + b"\x01" + struct.pack(">I", 0)
    crc = zlib.crc32(bytes(claim), zlib.crc32(prefix))
    stored = prefix + struct.pack(">I", crc) + bytes(claim)
    result = ValueCodec(max_value_bytes=1_000_000).try_decode(stored)
    assert isinstance(result, DecodeFailure) and result.reason == "oversize"


def test_unserializable_values_get_a_clear_error_before_anything_is_written() -> None:
    with pytest.raises(CodecError, match="a object cannot be cached"):
        codec.prepare(object())


def test_negative_generations_cannot_be_framed() -> None:
    with pytest.raises(CodecError):
        codec.encode("x", -1)


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=30,
    ),
    generation=st.integers(0, 2**63),
)
def test_any_json_value_round_trips_under_any_generation(value: object, generation: int) -> None:
    decoded = codec.decode(codec.encode(value, generation))
    assert decoded.value == value and decoded.generation == generation


@given(data=st.binary(max_size=3000), cut=st.integers(1, 50))
def test_no_truncation_of_any_value_ever_decodes(data: bytes, cut: int) -> None:
    stored = codec.encode(data, random.Random(len(data)).randrange(2**40))
    assert isinstance(codec.try_decode(stored[: max(0, len(stored) - cut)]), DecodeFailure)
