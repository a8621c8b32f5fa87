"""zstd dictionaries: training, files, and values written with a dictionary a reader lacks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cachebus.bench._samples import sized_json
from cachebus.contracts.errors import ConfigError
from cachebus.core import CacheConfig, ValueCodec
from cachebus.core.codec import Compression, DecodeFailure
from cachebus.core.dictionary import Dictionary


def _samples(kind: str, count: int, seed: int) -> list[bytes]:
    return [sized_json(kind, 1024, random.Random(seed + i)) for i in range(count)]


@pytest.fixture(scope="module")
def market_dictionary() -> Dictionary:
    return Dictionary.train(_samples("market", 600, 50_000), size=8192)


def test_a_dictionary_makes_one_kilobyte_values_compress(market_dictionary: Dictionary) -> None:
    values = _samples("market", 100, 0)
    plain, with_dict = ValueCodec(), ValueCodec(dictionaries={None: market_dictionary})
    raw = sum(map(len, values))
    plain_ratio = raw / sum(len(plain.encode(v, 1)) for v in values)
    dict_ratio = raw / sum(len(with_dict.encode(v, 1)) for v in values)
    assert dict_ratio > 2.5 > plain_ratio
    assert with_dict.decode(with_dict.encode(values[0], 1)).value == values[0]


def test_a_dictionary_survives_a_round_trip_through_a_file(
    tmp_path: Path, market_dictionary: Dictionary
) -> None:
    path = market_dictionary.save(tmp_path / "markets.zdict")
    loaded = Dictionary.load(path)
    assert loaded.dict_id == market_dictionary.dict_id and loaded.data == market_dictionary.data


def test_a_reader_without_the_dictionary_gets_a_miss_not_garbage(
    market_dictionary: Dictionary,
) -> None:
    stored = ValueCodec(dictionaries={None: market_dictionary}).encode(
        _samples("market", 1, 9)[0], 1
    )
    result = ValueCodec().try_decode(stored)
    assert isinstance(result, DecodeFailure) and result.reason == "unknown_dictionary"
    assert str(market_dictionary.dict_id) in result.message


def test_decode_only_dictionaries_read_values_from_before_a_rollout(
    market_dictionary: Dictionary,
) -> None:
    value = _samples("market", 1, 11)[0]
    stored = ValueCodec(dictionaries={None: market_dictionary}).encode(value, 1)
    assert ValueCodec(decode_only=(market_dictionary,)).decode(stored).value == value


def test_per_namespace_dictionaries_override_the_default(market_dictionary: Dictionary) -> None:
    codec = ValueCodec(dictionaries={"market": market_dictionary})
    value = _samples("market", 1, 12)[0]
    assert codec.decode(codec.encode(value, 1, namespace="market")).compression is (
        Compression.ZSTD_DICT
    )
    assert codec.decode(codec.encode(value, 1, namespace="prices")).compression is (
        Compression.ZSTD
    )


def test_config_passes_its_dictionaries_to_the_codec(market_dictionary: Dictionary) -> None:
    config = CacheConfig(dictionary=market_dictionary)
    assert config.dictionaries == {None: market_dictionary}


def test_too_few_samples_get_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 50 non-empty samples"):
        Dictionary.train([b"{}"] * 10)


def test_too_little_sample_data_for_the_size_gets_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="too little to train"):
        Dictionary.train([b'{"a": 1}'] * 100, size=16384)


def test_bytes_that_are_not_a_dictionary_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "not.zdict"
    path.write_bytes(b"just some bytes")
    with pytest.raises(ConfigError, match="not a trained zstd dictionary"):
        Dictionary.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Dictionary.load(tmp_path / "missing.zdict")
