"""The batch decoder's validator, with the event models' Python field validators compiled away.

pydantic calls a Python field validator once per event and field it guards: three calls per
decoded ``keys`` event (``schema_version`` is not a bool, the ``namespace`` is registered, the
ids' total size), each a Python frame entered from pydantic-core with its ``ValidationInfo``.
On the consumer's catch-up path (1,000 events per read) that is a cost per event a compiled
constraint does not have. So the batch fast path, when no registry is given (the consumer's
case: its namespaces are filtered after decoding), validates with a copy of the schema where
each validator is replaced by a compiled constraint that accepts *no more* than it did:

* ``_not_a_bool``: ``schema_version`` becomes a strict int equal to the one version known (a
  strict int refuses ``true``, which ``Literal[1]`` reads as 1 even in strict mode);
* ``_registered``: with no registry it only returns its value, so it is dropped;
* ``_total_size``: the tuple of ids is capped at the count whose total always fits.

The copy may refuse what the models accept (more ids than that cap, a version written ``1.0``):
the batch is then decoded entry by entry with the models, whose errors name the rules, exactly
as for any batch the fast path does not take. It must never accept what they refuse, which
``tests/unit/test_wire.py`` checks on generated batches. A validator this module does not know
(``_inside_namespace``, Python by nature) stays as it is. The fields a stream entry must carry
itself (``required``: a default would invent a version, id or time) lose their defaults here,
so an entry without them is refused by the validator instead of by a check per event after it.

pydantic-core reuses a model class's own, already built validator wherever a schema names the
class (its "prebuilt" validators), which would bring the Python validators back: the classes
are marked incomplete while the copy is built, so it is built from the copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import SchemaValidator, core_schema

from cachebus.contracts.rules import ALWAYS_FITS

__all__ = ["compiled_schema", "compiled_validator", "python_callbacks"]


def _callback(node: Mapping[str, Any]) -> str:
    function = node.get("function")
    return getattr(function.get("function"), "__name__", "") if function else ""


def _compile(node: Any, required: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_compile(item, required) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "model-fields":
        fields = {}
        for name, spec in node["fields"].items():
            field = _compile(spec, required)
            if name in required and field["schema"].get("type") == "default":
                field = {**field, "schema": field["schema"]["schema"]}
            fields[name] = field
        return {**node, "fields": fields}
    if node.get("type") in ("function-before", "function-after"):
        name = _callback(node)
        inner = node["schema"]
        if name == "_not_a_bool" and inner.get("type") == "literal":
            versions = inner["expected"]
            if len(versions) == 1 and type(versions[0]) is int:
                version: int = versions[0]
                return core_schema.int_schema(strict=True, ge=version, le=version)
        elif name == "_registered":
            return _compile(inner, required)
        elif name == "_total_size" and inner.get("type") == "tuple":
            capped = _compile(inner, required)
            capped["max_length"] = min(capped.get("max_length", ALWAYS_FITS), ALWAYS_FITS)
            return capped
    return {key: _compile(value, required) for key, value in node.items()}


def compiled_schema(adapter: TypeAdapter[Any], required: frozenset[str] = frozenset()) -> Any:
    """``adapter``'s core schema with the known Python field validators compiled and the
    ``required`` fields without defaults (see above)."""
    return _compile(adapter.core_schema, required)


def compiled_validator(
    adapter: TypeAdapter[Any], models: Iterable[type[BaseModel]], required: frozenset[str]
) -> SchemaValidator:
    """A validator of :func:`compiled_schema`, for inputs validated *without* a registry in
    the context. ``models``: every model class the schema names."""
    schema = compiled_schema(adapter, required)
    marked = [cls for cls in models if cls.__dict__.get("__pydantic_complete__")]
    for cls in marked:
        type.__setattr__(cls, "__pydantic_complete__", False)
    try:
        return SchemaValidator(schema)
    finally:
        for cls in marked:
            type.__setattr__(cls, "__pydantic_complete__", True)


def python_callbacks(schema: Any) -> list[str]:
    """The names of the Python validators ``schema`` still calls (for tests)."""
    found: list[str] = []
    if isinstance(schema, list):
        for item in schema:
            found += python_callbacks(item)
    elif isinstance(schema, dict):
        if str(schema.get("type", "")).startswith("function-"):
            found.append(_callback(schema))
        for key, value in schema.items():
            if key not in ("metadata", "serialization"):
                found += python_callbacks(value)
    return found
