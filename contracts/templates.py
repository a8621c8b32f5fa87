"""Key templates: how the ids of one namespace are shaped, written once in the registry file.

A template is literal text with named placeholders: ``{user_id}:{view}``, ``{market_id}``,
``settings`` (a fixed id). It is the only place an id's shape is spelled, so a producer that
invalidates and a reader that caches build the same id from the same parts:

* :meth:`KeyTemplate.render` turns named parts into an id (``user_id=42, view="all"`` gives
  ``42:all``), each part checked like :func:`~cachebus.contracts.names.validate_id`;
* :meth:`KeyTemplate.prefix_pattern` turns the leading parts into a glob covering every id
  that starts with them (``user_id=42`` gives ``42:*``), glob characters in parts escaped.

Rules that keep both unambiguous: placeholders are Python identifiers, each appears once, two
placeholders are separated by literal text, literal text holds no glob character, and a part
may not contain the first character of the literal that follows its placeholder (so
``user_id="4:2"`` cannot make ``42:*``-style prefixes of one user match another's ids).
Errors are :class:`ContractError` with rules ``template.*``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cachebus.contracts.errors import ContractError
from cachebus.contracts.names import (
    GLOB_SPECIAL,
    MAX_ID_LENGTH,
    escape_glob,
    validate_id,
    validate_pattern,
)

__all__ = ["KeyTemplate", "Parts"]

#: Named parts of an id: ``{"user_id": 42, "view": "all"}``.
Parts = Mapping[str, "str | int"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CONTROL = ("\x00", "\r", "\n")


def _fail(template: str, message: str, rule: str) -> ContractError:
    return ContractError(f"key template {template!r} {message}", rule=f"template.{rule}")


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A parsed key template. Build one with :meth:`parse` (or ``KeyTemplate.parse(text)``)."""

    text: str
    #: Literal text around the placeholders: ``len(literals) == len(placeholders) + 1``.
    literals: tuple[str, ...]
    placeholders: tuple[str, ...]
    _regex: re.Pattern[str] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> KeyTemplate:
        """Check ``text`` and split it into literals and placeholders."""
        if not isinstance(text, str) or not text:
            raise ContractError("a key template must be a non-empty string", rule="template.empty")
        if len(text) > MAX_ID_LENGTH:
            raise _fail(text, f"is longer than {MAX_ID_LENGTH} characters", "too_long")
        literals: list[str] = []
        names: list[str] = []
        at = 0
        for match in _PLACEHOLDER.finditer(text):
            literals.append(text[at : match.start()])
            names.append(match.group(1))
            at = match.end()
        literals.append(text[at:])
        for literal in literals:
            if "{" in literal:
                raise _fail(text, "has an unclosed '{'", "syntax")
            if "}" in literal:
                raise _fail(text, "has a '}' without its '{'", "syntax")
            glob = next((ch for ch in literal if ch in GLOB_SPECIAL), None)
            if glob is not None:
                raise _fail(text, f"has the glob character {glob!r} in its literal text", "glob")
            if any(ch in literal for ch in _CONTROL):
                raise _fail(text, "must not contain NUL, CR or LF", "control_char")
        for i, name in enumerate(names):
            if not name.isidentifier():
                raise _fail(text, f"has a placeholder {{{name}}} that is not an identifier", "name")
            if name in names[:i]:
                raise _fail(text, f"names the placeholder {{{name}}} twice", "duplicate")
            if i > 0 and not literals[i]:
                raise _fail(
                    text,
                    f"puts {{{names[i - 1]}}} and {{{name}}} side by side: separate them "
                    "with literal text such as ':'",
                    "adjacent",
                )
        return cls(text, tuple(literals), tuple(names), _regex_of(literals, names))

    # ---- building ids and patterns ------------------------------------------------------
    def render(self, parts: Parts | None = None, /, **named: str | int) -> str:
        """The id made of these parts (every placeholder given, none unknown)."""
        values = self._values(parts, named)
        missing = [name for name in self.placeholders if name not in values]
        if missing:
            raise _fail(self.text, f"needs the part {missing[0]!r}", "missing_part")
        return validate_id(self._join(values, len(self.placeholders)))

    def prefix_pattern(self, parts: Parts | None = None, /, **named: str | int) -> str:
        """A namespace-relative glob for every id starting with the given leading parts.

        The parts must be the first ones of the template, in order (``user_id`` of
        ``{user_id}:{view}``). All of them give a pattern matching that one id.
        """
        values = self._values(parts, named)
        count = len(values)
        if count == 0:
            raise _fail(self.text, "needs at least its first part for a prefix", "prefix")
        leading = self.placeholders[:count]
        if set(leading) != set(values):
            given = ", ".join(sorted(values))
            raise _fail(
                self.text,
                f"builds prefixes from its leading parts ({', '.join(leading)}), not {given}",
                "prefix",
            )
        if count == len(self.placeholders):
            return validate_pattern(escape_glob(self.render(values)))
        return validate_pattern(escape_glob(self._join(values, count)) + "*")

    def matches(self, ident: str) -> bool:
        """Whether ``ident`` has this template's shape."""
        return self._regex.fullmatch(ident) is not None

    # ---- helpers ---------------------------------------------------------------------------
    def _values(self, parts: Parts | None, named: Mapping[str, str | int]) -> dict[str, str]:
        merged = {**(parts or {}), **named}
        out: dict[str, str] = {}
        for name, value in merged.items():
            if name not in self.placeholders:
                known = ", ".join(self.placeholders) or "none"
                raise _fail(self.text, f"has no part {name!r} (its parts: {known})", "unknown_part")
            out[name] = self._part(name, value)
        return out

    def _part(self, name: str, value: str | int) -> str:
        try:
            text = validate_id(value)
        except ContractError as exc:
            raise ContractError(f"part {name!r}: {exc}", rule=exc.rule) from None
        index = self.placeholders.index(name)
        after = self.literals[index + 1]
        if after and after[0] in text:
            raise _fail(
                self.text,
                f"cannot take {text!r} as {name!r}: it contains {after[0]!r}, the separator "
                "that follows the part (it would make ids ambiguous)",
                "part_separator",
            )
        return text

    def _join(self, values: Mapping[str, str], count: int) -> str:
        out = [self.literals[0]]
        for i in range(count):
            out.append(values[self.placeholders[i]])
            out.append(self.literals[i + 1])
        return "".join(out)

    def __str__(self) -> str:
        return self.text


def _regex_of(literals: list[str], names: list[str]) -> re.Pattern[str]:
    out = [re.escape(literals[0])]
    for i, _name in enumerate(names):
        after = literals[i + 1]
        stop = re.escape(after[0]) if after else ""
        out.append(f"[^{stop}\\x00\\r\\n]+")
        out.append(re.escape(after))
    return re.compile("".join(out), re.DOTALL)
