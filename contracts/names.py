"""Names, ids and globs: the syntax rules every key and pattern obeys, and the references
services publish.

Ids are data, not patterns: glob characters in ids are escaped whenever an id is put inside a
pattern, so ``user 4*2`` can never match ``user 4002``. A pattern names something narrower than
a whole namespace (a bare ``*`` is refused).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from cachebus.contracts.errors import ContractError

__all__ = [
    "GLOB_SPECIAL",
    "MAX_ID_LENGTH",
    "MAX_PARTITIONS",
    "MAX_PATTERN_LENGTH",
    "KeyRef",
    "PatternRef",
    "escape_glob",
    "glob_match",
    "validate_id",
    "validate_name",
    "validate_pattern",
]

#: Longest id accepted inside a key (characters).
MAX_ID_LENGTH = 512
#: Longest namespace-relative glob accepted in a pattern invalidation (characters).
MAX_PATTERN_LENGTH = 256
#: Most partitions a stream may be split into.
MAX_PARTITIONS = 256

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: Redis glob metacharacters (SCAN MATCH): never literal in an id put in a pattern.
GLOB_SPECIAL = frozenset("*?[]\\")


def validate_name(value: str, what: str) -> str:
    """Check a prefix, scope, namespace or stream name: no separators, no glob characters."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ContractError(
            f"{what} {value!r} is not a valid name: use 1-64 characters from "
            "letters, digits, '_', '.', '-', starting with a letter or digit",
            rule=f"{what}.invalid",
        )
    return value


def validate_id(value: str | int) -> str:
    """Return the id as a string, or raise :class:`ContractError` saying what is wrong."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise ContractError(
            f"key id must be a str or int, not {type(value).__name__}", rule="id.type"
        )
    if not text:
        raise ContractError("key id must not be empty", rule="id.empty")
    if len(text) > MAX_ID_LENGTH:
        raise ContractError(
            f"key id is {len(text)} characters long; the limit is {MAX_ID_LENGTH}",
            rule="id.too_long",
        )
    # Three substring tests are ~10x faster than a per-character scan on the publish path.
    if "\x00" in text or "\r" in text or "\n" in text:
        raise ContractError("key id must not contain NUL, CR or LF", rule="id.control_char")
    return text


def escape_glob(text: str) -> str:
    """Escape Redis glob metacharacters (``* ? [ ] \\``) so ``text`` only matches itself."""
    if not any(ch in GLOB_SPECIAL for ch in text):
        return text
    return "".join("\\" + ch if ch in GLOB_SPECIAL else ch for ch in text)


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "*":
            out.append(".*")
            i += 1
        elif ch == "?":
            out.append(".")
            i += 1
        elif ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : close]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            members = "".join("\\" + c if c in "\\]^[" else c for c in body)
            out.append(f"[{'^' if negate else ''}{members}]")
            i = close + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches the Redis glob ``pattern`` (same rules as SCAN MATCH)."""
    return _glob_regex(pattern).fullmatch(text) is not None


def _glob_literal_count(pattern: str) -> int:
    """Count characters of ``pattern`` that match literally, checking bracket balance."""
    literal = 0
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ContractError("pattern ends with a lone backslash", rule="pattern.syntax")
            literal += 1
            i += 2
            continue
        if ch == "[":
            close = pattern.find("]", i + 2)
            if close == -1:
                raise ContractError("pattern has an unclosed '['", rule="pattern.syntax")
            i = close + 1
            continue
        if ch == "]":
            raise ContractError("pattern has an unmatched ']'", rule="pattern.syntax")
        if ch not in "*?":
            literal += 1
        i += 1
    return literal


def validate_pattern(pattern: str) -> str:
    """Check a namespace-relative glob from an event.

    A pattern must name something narrower than the whole namespace: a bare ``*`` (or any
    pattern without a literal character, such as ``**`` or ``?*``) is refused; flushing a
    namespace is its own, explicit, operation.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ContractError("pattern must be a non-empty string", rule="pattern.empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ContractError(
            f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}",
            rule="pattern.too_long",
        )
    if "\x00" in pattern or "\r" in pattern or "\n" in pattern:
        raise ContractError("pattern must not contain NUL, CR or LF", rule="pattern.control_char")
    if _glob_literal_count(pattern) == 0:
        raise ContractError(
            f"pattern {pattern!r} matches the whole namespace; use flush_namespace() for that",
            rule="pattern.bare_star",
        )
    return pattern


@dataclass(frozen=True, slots=True)
class KeyRef:
    """One cached item: a namespace and a namespace-relative id."""

    namespace: str
    id: str


@dataclass(frozen=True, slots=True)
class PatternRef:
    """Every item of a namespace whose id matches ``pattern`` (a glob; ids inside it escaped)."""

    namespace: str
    pattern: str
