"""Typed values: reads give back the caller's type, checked, instead of ``Any``.

A cache stores bytes as they are and anything else as JSON, so what comes back from Redis is
the JSON form of what was stored: a dataclass comes back as a dict, a tuple as a list, a
datetime as a string. Declaring that as ``Any`` would hide it from the type checker, so:

* a read without a type returns :data:`Stored` (bytes or JSON values), which the caller
  narrows like any decoded JSON;
* a read with ``type=X`` (any type pydantic validates: a model, a dataclass, a TypedDict,
  ``list[Product]``...) validates the stored value into ``X``; what is written for ``X`` is
  pydantic's JSON form of it, so a model round-trips.

A stored value that no longer validates (the code's type changed since it was cached) is a
miss, counted in ``stats.invalid``, never an error: ``get_or_set`` and ``@cached`` load it
again and overwrite it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any, Generic, TypeVar, cast

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError
from typing_extensions import TypeAliasType

from cachebus.contracts.errors import CodecError, ConfigError
from cachebus.core._core import CacheCore, Read

__all__ = ["JSON", "Stored", "ValueType", "typed_read", "value_type"]

# TypeAliasType rather than a string alias: also usable at run time (pydantic fields, typing
# introspection), and recursive, on Python 3.11 as with 3.12's ``type`` statement.
#: A decoded JSON value.
JSON = TypeAliasType("JSON", "bool | int | float | str | list[JSON] | dict[str, JSON] | None")
#: What an untyped read returns: the caller's bytes, or the stored JSON.
Stored = TypeAliasType("Stored", "bytes | JSON")

T = TypeVar("T")


class ValueType(Generic[T]):
    """How values of one type are written to and read back from the cache."""

    __slots__ = ("_adapter", "_raw", "name")

    def __init__(self, tp: Any) -> None:
        try:
            self._adapter: TypeAdapter[T] = TypeAdapter(tp)
        except PydanticSchemaGenerationError as exc:
            raise ConfigError(
                f"cannot cache values of type {tp!r}: pydantic cannot validate it ({exc}); "
                "use a model, a dataclass, a TypedDict or JSON types"
            ) from None
        self._raw = tp is bytes  # bytes are stored as they are, not as base64-ish JSON
        self.name = getattr(tp, "__qualname__", repr(tp))

    def load(self, stored: object) -> T:
        """The stored value as a ``T``; raises :class:`ValidationError` if it is not one."""
        return self._adapter.validate_python(stored)

    def revive(self, stored: object) -> tuple[bool, T | None]:
        """``(True, value)`` if ``stored`` validates, ``(False, None)`` if not."""
        try:
            return True, self._adapter.validate_python(stored)
        except ValidationError:
            return False, None

    def dump(self, value: T) -> object:
        """What to store for ``value``: bytes as they are, anything else its JSON form."""
        if self._raw:
            return value
        try:
            return self._adapter.dump_python(value, mode="json")
        except (PydanticSerializationError, ValueError) as exc:
            raise CodecError(f"a {self.name} value cannot be stored as JSON: {exc}") from None

    def __repr__(self) -> str:
        return f"ValueType({self.name})"


@functools.lru_cache(maxsize=512)
def _cached_type(tp: Any) -> ValueType[Any]:
    return ValueType(tp)


def value_type(tp: type[T] | Any) -> ValueType[T]:
    """The (memoised) :class:`ValueType` of ``tp``: building a pydantic adapter costs ~100 µs."""
    try:
        return cast(ValueType[T], _cached_type(cast(Hashable, tp)))
    except TypeError:  # an unhashable annotation: build it each time
        return ValueType(tp)


def typed_read(core: CacheCore, read: Read, typed: ValueType[Any] | None) -> Read:
    """``read`` with its value validated into ``typed``'s type; a miss if it does not validate."""
    if not read.hit or typed is None:
        return read
    ok, value = typed.revive(read.value)
    if not ok:
        core.stats.invalid += 1
        return Read(False, generation=read.generation)
    return Read(True, value, read.generation, read.written_at)
