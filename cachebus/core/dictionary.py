"""zstd dictionaries for small cache values: train, save, load.

Values around 1 KB barely compress on their own (~1.5x): their redundancy is *between* values
(the same field names, URLs and enum strings in every market). A dictionary trained on sample
values carries that shared part, so each value compresses against it (~3x on 1 KB JSON).

Every value written with a dictionary records the dictionary's id, so a reader holding another
dictionary gets a counted miss, never wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.registry import Registry

__all__ = [
    "DEFAULT_DICTIONARY_SIZE",
    "MIN_TRAINING_SAMPLES",
    "Dictionary",
    "registry_dictionaries",
]

#: 16 KB: what perf-baseline.md §e measured (3.1-3.8x on ~1 KB values).
DEFAULT_DICTIONARY_SIZE = 16 * 1024
#: zstd's trainer needs many samples; below this it fails or learns nothing useful.
MIN_TRAINING_SAMPLES = 50


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A trained zstd dictionary: :meth:`train`, :meth:`load` or :meth:`from_bytes` build one."""

    data: bytes = field(repr=False)
    dict_id: int
    _zstd: zstandard.ZstdCompressionDict = field(repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> Dictionary:
        if not data:
            raise ConfigError("a zstd dictionary cannot be empty")
        zdict = zstandard.ZstdCompressionDict(bytes(data))
        dict_id = int(zdict.dict_id())
        if dict_id == 0:
            raise ConfigError(
                "these bytes are not a trained zstd dictionary (dictionary id 0); "
                "create one with `cachebus codec train`"
            )
        return cls(bytes(data), dict_id, zdict)

    @classmethod
    def load(cls, path: str | Path) -> Dictionary:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read zstd dictionary {str(path)!r}: {exc}") from None
        return cls.from_bytes(data)

    @classmethod
    def train(
        cls, samples: Iterable[bytes], size: int = DEFAULT_DICTIONARY_SIZE, level: int = 1
    ) -> Dictionary:
        """Train a dictionary of ``size`` bytes from serialized values (JSON bytes)."""
        chunks: list[bytes | bytearray | memoryview] = [bytes(s) for s in samples if s]
        if len(chunks) < MIN_TRAINING_SAMPLES:
            raise ConfigError(
                f"dictionary training needs at least {MIN_TRAINING_SAMPLES} non-empty samples, "
                f"got {len(chunks)}; give more files or a larger --sample"
            )
        if not 1024 <= size <= 1024 * 1024:
            raise ConfigError(f"dictionary size {size} is outside 1 KiB..1 MiB")
        total = sum(len(chunk) for chunk in chunks)
        if total < 4 * size:
            raise ConfigError(
                f"the samples hold {total} bytes, too little to train a {size}-byte "
                "dictionary; give at least 4x the dictionary size, or a smaller --size"
            )
        try:
            zdict = zstandard.train_dictionary(size, chunks, level=level)
        except zstandard.ZstdError as exc:
            raise ConfigError(
                f"zstd could not train a dictionary from these samples: {exc}"
            ) from exc
        return cls.from_bytes(zdict.as_bytes())

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        try:
            target.write_bytes(self.data)
        except OSError as exc:
            raise ConfigError(f"cannot write zstd dictionary {str(path)!r}: {exc}") from None
        return target

    @property
    def zstd(self) -> zstandard.ZstdCompressionDict:
        return self._zstd


def registry_dictionaries(registry: Registry) -> dict[str, Dictionary]:
    """The dictionaries the registry names (``dictionary = "..."``), loaded, by namespace."""
    out: dict[str, Dictionary] = {}
    for ns in registry:
        path = registry.dictionary_path(ns.name)
        if path is not None:
            try:
                out[ns.name] = Dictionary.load(path)
            except ConfigError as exc:
                raise ConfigError(f"namespace {ns.name!r} of the registry: {exc}") from None
    return out
