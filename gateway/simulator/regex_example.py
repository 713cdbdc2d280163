"""A short string that a regular expression matches: for JSON-schema `pattern`s (pydantic `Field(pattern=...)`).

Walks the pattern as Python's own regex parser reads it and takes the first, shortest way through: the first
branch, the first character of a class, each repeat at its minimum (at least once). The result is checked with
`re.search` (JSON Schema patterns are unanchored searches), so a pattern this cannot satisfy (lookarounds that
reject the first way, backreferences into alternatives) gives None instead of a wrong string.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

# The parser `re` itself uses. It has no public name or type stubs (`sre_parse` is its deprecated alias, which
# warns on import), hence the dynamic import; it has kept this shape from Python 3.11 to today.
_parser: Any = importlib.import_module("re._parser")

MAX_PATTERN_CHARS = 1000  # longer patterns are not worth walking
_MAX_REPEAT = 256  # a repeat's minimum above this is not honoured: the check then fails and we give None
_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0", "CATEGORY_NOT_DIGIT": "a", "CATEGORY_WORD": "a", "CATEGORY_NOT_WORD": "-",
    "CATEGORY_SPACE": " ", "CATEGORY_NOT_SPACE": "a",
}
_NEGATED_CANDIDATES = "a0A_-x. Z9"


class _Unsupported(Exception):
    pass


@functools.lru_cache(maxsize=256)
def pattern_example(pattern: str) -> str | None:
    """A string `re.search(pattern, s)` matches, or None when none could be built."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        tree = _parser.parse(pattern)
        text = _emit(tree, {})
        return text if re.search(pattern, text) else None
    except (_Unsupported, re.error, RecursionError, OverflowError, ValueError, TypeError, IndexError):
        return None


def _emit(items: Any, groups: dict[int, str]) -> str:
    return "".join(_emit_one(str(op), arg, groups) for op, arg in items)


def _emit_one(op: str, arg: Any, groups: dict[int, str]) -> str:
    if op == "LITERAL":
        return chr(arg)
    if op == "NOT_LITERAL":
        return "b" if chr(arg) == "a" else "a"
    if op == "ANY":
        return "a"
    if op == "IN":
        return _class_char(arg)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, sub = arg
        count = int(max(low, min(high, 1)))
        if count > _MAX_REPEAT:
            raise _Unsupported("repeat minimum too large")
        return _emit(sub, groups) * count
    if op == "SUBPATTERN":
        group, _add_flags, _del_flags, sub = arg
        text = _emit(sub, groups)
        if group is not None:
            groups[group] = text
        return text
    if op == "ATOMIC_GROUP":
        return _emit(arg, groups)
    if op == "BRANCH":
        return _emit(arg[1][0], groups)
    if op == "GROUPREF":
        return groups.get(int(arg), "")
    if op in ("AT", "ASSERT", "ASSERT_NOT"):
        return ""  # anchors and lookarounds consume nothing; the final check catches a lookaround that fails
    raise _Unsupported(op)


def _class_char(items: Any) -> str:
    """One character of a `[...]` class (or `\\d`-style category)."""
    negated = any(str(op) == "NEGATE" for op, _ in items)
    if negated:
        for candidate in _NEGATED_CANDIDATES:
            if not any(_class_item_has(str(op), arg, candidate) for op, arg in items):
                return candidate
        raise _Unsupported("negated class")
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY":
            return _CATEGORY_CHARS.get(str(arg), "a")
    raise _Unsupported("empty class")


def _class_item_has(op: str, arg: Any, char: str) -> bool:
    if op == "LITERAL":
        return chr(arg) == char
    if op == "RANGE":
        return bool(arg[0] <= ord(char) <= arg[1])
    if op == "CATEGORY":
        return bool(re.fullmatch(_CATEGORY_REGEX.get(str(arg), "."), char))
    return False


_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S",
}
