"""The value codec: one Redis string per value, with a header that names how it was written.

Layout of a stored value (all integers big-endian)::

    byte 0      0xC0 | compression << 1 | json      (0xC0..0xC5; anything else is not ours)
    [uint32]    zstd dictionary id, only when compression is ZSTD_DICT
    varint      generation of the namespace when the value was written (LEB128)
    uint32      written_at, Unix seconds (bounds adaptive TTL; drives refresh-ahead)
    uint32      CRC-32 of everything before it plus the payload
    payload     JSON (orjson) or the caller's bytes, raw or as a magicless zstd frame

The CRC makes a truncated or overwritten value detectable whatever its codec (a truncated
``12345`` is still valid JSON), so the cache never returns wrong data. Values smaller than
``compress_threshold`` stay raw (zstd gains ~1.5x on 1 KB and costs 4 µs); larger ones use
zstd level 1 (3-4x on 10-100 KB JSON at ~18 µs per 10 KB, perf-baseline.md §e). A trained
dictionary makes small values compress too (~3.5x on 1 KB market JSON): it serves values
from ``dictionary_min_bytes`` up to ``dictionary_max_bytes``, plain zstd the larger ones.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
import zstandard

from cachebus.contracts.errors import CodecError
from cachebus.core._header import (
    COMPRESSIONS,
    LEADS,
    MAGIC,
    MIN_SIZE,
    U32,
    Compression,
    Decoded,
    DecodeFailure,
    Prepared,
    read_varint,
    varint,
)
from cachebus.core.dictionary import Dictionary

__all__ = ["Compression", "DecodeFailure", "Decoded", "Prepared", "ValueCodec"]

_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS


class ValueCodec:
    """Encodes values for the cache and decodes them back. Safe to share between threads.

    ``dictionaries`` maps a namespace to the dictionary its values are compressed with
    (``None`` key: the default for every other namespace); ``decode_only`` dictionaries are
    accepted when reading, for rolling a new dictionary out. Values of the ``uncompressed``
    namespaces (``compression = "none"`` in the registry) are stored raw.
    """

    def __init__(
        self,
        *,
        compress_threshold: int = 1024,
        level: int = 1,
        max_value_bytes: int = 8 * 1024 * 1024,
        dictionaries: Mapping[str | None, Dictionary] | None = None,
        decode_only: tuple[Dictionary, ...] = (),
        dictionary_min_bytes: int = 64,
        dictionary_max_bytes: int = 4096,
        uncompressed: frozenset[str] = frozenset(),
    ) -> None:
        self.compress_threshold = compress_threshold
        self.uncompressed = uncompressed
        self.level = level
        self.max_value_bytes = max_value_bytes
        self.dictionary_min_bytes = dictionary_min_bytes
        self.dictionary_max_bytes = dictionary_max_bytes
        chosen = dict(dictionaries or {})
        self._default = chosen.pop(None, None)
        self._for_namespace: dict[str | None, Dictionary] = chosen
        known = [*chosen.values(), *decode_only]
        if self._default is not None:
            known.append(self._default)
        self._by_id: Mapping[int, Dictionary] = MappingProxyType({d.dict_id: d for d in known})
        # zstandard contexts must not be used by two threads at once.
        self._local = threading.local()

    # ---- contexts ---------------------------------------------------------------------
    def _params(self, bucket: int) -> zstandard.ZstdCompressionParameters:
        return zstandard.ZstdCompressionParameters.from_level(
            self.level,
            source_size=bucket,  # tables sized for the input: small values compress 1.5x faster
            format=_FORMAT,
            write_content_size=True,
            write_checksum=False,  # the header's CRC covers the whole value
            write_dict_id=False,  # the header records it
        )

    def _compressor(self, dictionary: Dictionary | None, size: int) -> zstandard.ZstdCompressor:
        # One context per (dictionary, power-of-two size class) and thread.
        bucket = 1 << max(10, min(18, (size - 1).bit_length()))
        try:
            cache: dict[tuple[int, int], zstandard.ZstdCompressor] = self._local.c
        except AttributeError:
            cache = self._local.c = {}
        key = (dictionary.dict_id if dictionary else 0, bucket)
        ctx = cache.get(key)
        if ctx is None:
            params = self._params(bucket)
            if dictionary is None:
                ctx = zstandard.ZstdCompressor(compression_params=params)
            else:
                ctx = zstandard.ZstdCompressor(dict_data=dictionary.zstd, compression_params=params)
            cache[key] = ctx
        return ctx

    def _decompressor(self, dictionary: Dictionary | None) -> zstandard.ZstdDecompressor:
        try:
            cache: dict[int, zstandard.ZstdDecompressor] = self._local.d
        except AttributeError:
            cache = self._local.d = {}
        key = dictionary.dict_id if dictionary else 0
        ctx = cache.get(key)
        if ctx is None:
            zdict = dictionary.zstd if dictionary else None
            ctx = zstandard.ZstdDecompressor(dict_data=zdict, format=_FORMAT)
            cache[key] = ctx
        return ctx

    # ---- encode -----------------------------------------------------------------------
    def serialize(self, value: Any) -> tuple[bytes, bool]:
        """``(payload, is_json)``: bytes pass through, anything else becomes JSON."""
        if type(value) is bytes:
            return value, False
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), False
        try:
            return orjson.dumps(value), True
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise CodecError(
                f"a {type(value).__name__} cannot be cached: {exc}; cache bytes or "
                "JSON-serializable data (dict, list, str, numbers, dataclasses, datetimes)"
            ) from exc

    def encode(
        self, value: Any, generation: int, *, namespace: str | None = None, now: float | None = None
    ) -> bytes:
        """The stored form of ``value``. Raises :class:`CodecError` for oversize or unserializable
        values (nothing is written)."""
        return self.frame(self.prepare(value, namespace=namespace), generation, now=now)

    def prepare(self, value: Any, *, namespace: str | None = None) -> Prepared:
        """Serialize and compress ``value``; :meth:`frame` then stamps it with a generation.

        Split in two so bad input fails before any round trip, and a value can be framed
        under the generation fetched afterwards.
        """
        payload, is_json = self.serialize(value)
        return self.prepare_payload(payload, is_json, namespace=namespace)

    def prepare_payload(
        self, payload: bytes, is_json: bool, *, namespace: str | None = None
    ) -> Prepared:
        size = len(payload)
        if size > self.max_value_bytes:
            raise CodecError(
                f"value is {size} bytes; the cache's cap is {self.max_value_bytes} "
                "(CacheConfig.max_value_bytes): raise it or do not cache this value"
            )
        flag = int(is_json)
        if self.uncompressed and namespace in self.uncompressed:
            return Prepared(LEADS[Compression.RAW, flag], payload, size)
        dictionary = (
            self._for_namespace.get(namespace, self._default)
            if self._for_namespace
            else self._default
        )
        if dictionary is not None and self.dictionary_min_bytes <= size < self.dictionary_max_bytes:
            packed = self._compressor(dictionary, size).compress(payload)
            if len(packed) + 4 < size:
                lead = LEADS[Compression.ZSTD_DICT, flag] + U32.pack(dictionary.dict_id)
                return Prepared(lead, packed, size)
        elif size >= self.compress_threshold:
            packed = self._compressor(None, size).compress(payload)
            if len(packed) < size:  # already-compressed bytes stay raw
                return Prepared(LEADS[Compression.ZSTD, flag], packed, size)
        return Prepared(LEADS[Compression.RAW, flag], payload, size)

    def frame(self, prepared: Prepared, generation: int, *, now: float | None = None) -> bytes:
        """Header + body: the bytes to store."""
        if generation < 0:
            raise CodecError(f"generation must not be negative, got {generation}")
        written_at = int(time.time() if now is None else now) & 0xFFFFFFFF
        lead, body, _size = prepared
        prefix = lead + varint(generation) + U32.pack(written_at)
        crc = zlib.crc32(body, zlib.crc32(prefix))
        return b"".join((prefix, U32.pack(crc), body))

    # ---- decode -----------------------------------------------------------------------
    def decode(self, data: bytes) -> Decoded:
        """Decode a stored value or raise :class:`CodecError` saying what is wrong with it."""
        result = self.try_decode(data)
        if isinstance(result, DecodeFailure):
            raise CodecError(result.message)
        return result

    def decode_payload(self, data: bytes) -> tuple[bytes, Decoded]:
        """The serialized payload (JSON bytes or the caller's bytes), for dictionary training."""
        result = self._open(data)
        if isinstance(result, DecodeFailure):
            raise CodecError(result.message)
        payload, generation, written_at, compression, is_json = result
        return payload, Decoded(None, generation, written_at, compression, is_json)

    def try_decode(self, data: bytes) -> Decoded | DecodeFailure:
        """Like :meth:`decode`, but returns a :class:`DecodeFailure` instead of raising."""
        opened = self._open(data)
        if isinstance(opened, DecodeFailure):
            return opened
        payload, generation, written_at, compression, is_json = opened
        if not is_json:
            return Decoded(payload, generation, written_at, compression, False)
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return DecodeFailure("corrupt", f"the JSON payload does not parse: {exc}")
        return Decoded(value, generation, written_at, compression, True)

    def _open(self, data: bytes) -> tuple[bytes, int, int, Compression, bool] | DecodeFailure:
        if len(data) < MIN_SIZE:
            return DecodeFailure("corrupt", f"{len(data)} bytes is shorter than any header")
        first = data[0]
        compression_bits = (first >> 1) & 0x07
        if first & 0xF0 != MAGIC or compression_bits > Compression.ZSTD_DICT:
            return DecodeFailure(
                "unknown_codec", f"header byte 0x{first:02x} names no codec of this cachebus"
            )
        compression = COMPRESSIONS[compression_bits]
        try:
            pos = 1
            dictionary = None
            if compression is Compression.ZSTD_DICT:
                (dict_id,) = U32.unpack_from(data, pos)
                pos += 4
                dictionary = self._by_id.get(dict_id)
            generation, pos = read_varint(data, pos)
            (written_at,) = U32.unpack_from(data, pos)
            pos += 4
            (crc,) = U32.unpack_from(data, pos)
        except (IndexError, struct.error):
            return DecodeFailure("corrupt", "the header is truncated")
        body = data[pos + 4 :]
        if zlib.crc32(body, zlib.crc32(data[:pos])) != crc:
            return DecodeFailure("corrupt", "checksum mismatch: the value is truncated or altered")
        if compression is Compression.ZSTD_DICT and dictionary is None:
            return DecodeFailure(
                "unknown_dictionary",
                f"written with zstd dictionary {dict_id}, which this cache does not hold",
            )
        if compression is Compression.RAW:
            payload = body
        else:
            failure_or_payload = self._inflate(body, dictionary)
            if isinstance(failure_or_payload, DecodeFailure):
                return failure_or_payload
            payload = failure_or_payload
        if len(payload) > self.max_value_bytes:
            return DecodeFailure(
                "oversize", f"value is {len(payload)} bytes, over the {self.max_value_bytes} cap"
            )
        return payload, generation, written_at, compression, bool(first & 1)

    def _inflate(self, body: bytes, dictionary: Dictionary | None) -> bytes | DecodeFailure:
        try:
            size = zstandard.get_frame_parameters(body, format=_FORMAT).content_size
        except zstandard.ZstdError as exc:
            return DecodeFailure("corrupt", f"not a zstd frame: {exc}")
        if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
            return DecodeFailure("corrupt", "the zstd frame does not state its size")
        if size > self.max_value_bytes:
            # Checked before inflating: a hostile frame must not make us allocate its claim.
            return DecodeFailure(
                "oversize", f"value inflates to {size} bytes, over the {self.max_value_bytes} cap"
            )
        try:
            return self._decompressor(dictionary).decompress(body, max_output_size=size)
        except zstandard.ZstdError as exc:
            return DecodeFailure("corrupt", f"the zstd frame does not inflate: {exc}")
