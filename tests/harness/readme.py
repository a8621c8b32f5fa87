"""README.md's code blocks and the markers that say how each one is tested.

Every Python block, and every block of ``cachebus`` command lines, is preceded (on the
nearest non-blank line above its fence) by one marker:

* ``<!-- readme: run -->``: run as written against a real Redis by ``tests/integration/
  test_readme.py``, in a directory holding a ``cachebus.toml`` (``run registry=demo``: the
  demo's registry file; default: the README's quick-start registry). Python runs as a script,
  top-level ``await`` as in ``python -m asyncio``, with ``CACHEBUS_REDIS_URL`` set; it must
  exit 0 and leave no ``ResourceWarning``. Command lines run one by one, with the
  ``export`` lines of the block and ``CACHEBUS_REDIS_URL``; each must exit 0, or the code
  its ``# exit N`` comment says.
* ``<!-- readme: excerpt PATH -->``: lines of a tested file (every line of the block
  appears in PATH, in order; a line ``...`` stands for lines left out), such as
  ``examples/shop/api.py``.
* ``<!-- readme: fragment TEST: REASON -->``: not runnable alone (REASON says why, such as
  "needs PostgreSQL"); TEST (``tests/....py::test_name``) exercises what it shows and must
  exist; a Python fragment must still compile.
* ``<!-- readme: skip: REASON -->``: command lines only, not run (REASON says why).
* ``<!-- readme-test: NAME -->``: read by a dedicated test through :func:`readme_block`.

An unmarked block, a malformed marker, or a fragment naming a test that does not exist fails
``tests/integration/test_readme.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["README", "ROOT", "Block", "Marker", "blocks", "readme_block"]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```([\w-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*(readme(?:-test)?):\s*(.*?)\s*-->$")
_KINDS = ("run", "excerpt", "fragment", "skip")


@dataclass(frozen=True)
class Marker:
    kind: str  # run, excerpt, fragment, skip, or "named" (readme-test)
    argument: str  # run: options; excerpt: the path; fragment: the test; named: the name
    reason: str


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: Marker | None
    problem: str | None  # a marker that could not be read

    @property
    def is_python(self) -> bool:
        return self.language in ("python", "py")

    @property
    def commands(self) -> list[str]:
        """The ``cachebus`` command lines (continuations joined, ``$ `` prompts dropped)."""
        joined = self.text.replace("\\\n", " ")
        lines = [line.strip().removeprefix("$ ") for line in joined.splitlines()]
        return [line for line in lines if line.startswith("cachebus ") or line == "cachebus"]

    @property
    def is_cli(self) -> bool:
        return not self.is_python and bool(self.commands)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def _marker(text: str) -> tuple[Marker | None, str | None]:
    found = _MARKER.match(text)
    if found is None:
        return None, None
    tag, body = found.groups()
    if tag == "readme-test":
        return Marker("named", body, ""), None
    head, _, reason = f"{body} ".partition(": ")  # not "::" of a test's name
    kind, _, argument = head.strip().partition(" ")
    if kind not in _KINDS:
        return None, f"unknown readme marker {text!r} (kinds: {', '.join(_KINDS)})"
    if kind in ("fragment", "skip") and len(reason.split()) < 2:
        return None, f"{text!r} must say why, after a colon, in a few words"
    if kind in ("excerpt", "fragment") and not argument.strip():
        return None, f"{text!r} must name the {'file' if kind == 'excerpt' else 'test'}"
    return Marker(kind, argument.strip(), reason.strip()), None


def blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, with its marker."""
    lines = (README.read_text() if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker, problem = _marker(previous.strip())
        body = "\n".join(lines[start + 1 : i]) + "\n"
        found.append(Block(start + 1, fence.group(1), body, marker, problem))
        i += 1
    return found


def readme_block(name: str) -> str:
    """The text of the block marked ``<!-- readme-test: NAME -->``."""
    named = [b for b in blocks() if b.marker is not None and b.marker.kind == "named"]
    for block in named:
        assert block.marker is not None
        if block.marker.argument == name:
            return block.text
    raise AssertionError(f"README.md has no block marked readme-test: {name!r}")
