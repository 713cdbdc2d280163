"""Deterministic example values for JSON schemas: the simulator's structured answers and tool arguments.

`example(schema)` is a JSON value valid against `schema`, for the schemas the APIs accept and pydantic emits:
objects (properties, required, additionalProperties, min/maxProperties), arrays (items, prefixItems, min/maxItems,
uniqueItems), enum, const, strings (min/maxLength, the common formats, simple patterns), integers and numbers
(inclusive and exclusive bounds, multipleOf), booleans, null, type lists, anyOf/oneOf/allOf, and $ref into
$defs/definitions (or any local JSON pointer), recursive models included.

The same schema always gives the same value: the first enum value or branch (not null, unless past the nesting
depth), every declared property (optional ones too, so an answer shows the whole shape), two items per array
unless bounded, "sim" for strings, 1 for numbers moved inside their bounds. Array items are numbered variants
("sim", "sim1", 2, ...) so `uniqueItems` holds.

It never raises: the simulator answers whatever a gateway forwards, so keywords of the wrong type are ignored
and a schema with no finite instance, or one whose $refs fan out exponentially, gets a bounded best effort.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, TypeGuard
from urllib.parse import unquote

from gateway.simulator.regex_example import pattern_example

_SOFT_DEPTH = 8  # past this nesting, the shortest way out: required properties, minimum items, null branches
_HARD_DEPTH = 48  # past this, null: a schema whose required fields recurse forever has no finite instance
_MAX_NODES = 20_000  # values per example: $ref fan-out could otherwise grow exponentially
_MAX_ITEMS = 64  # of an array or of extra object keys, whatever minItems/minProperties say
_MAX_STRING = 4096  # characters, whatever minLength says
_MAX_HOPS = 32  # $ref and allOf resolutions for one schema: a $ref cycle must end
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


def _suffix(variant: int) -> str:
    return "" if variant == 0 else str(variant)


_FORMATS: dict[str, Callable[[int], str]] = {
    "date-time": lambda v: f"2025-01-{1 + v % 28:02d}T12:00:00Z",
    "date": lambda v: f"2025-01-{1 + v % 28:02d}",
    "time": lambda v: f"12:{v % 60:02d}:00Z",
    "duration": lambda v: f"P{1 + v}D",
    "email": lambda v: f"sim{_suffix(v)}@example.com",
    "idn-email": lambda v: f"sim{_suffix(v)}@example.com",
    "hostname": lambda v: f"sim{_suffix(v)}.example.com",
    "idn-hostname": lambda v: f"sim{_suffix(v)}.example.com",
    "uri": lambda v: f"https://example.com/sim{_suffix(v)}",
    "iri": lambda v: f"https://example.com/sim{_suffix(v)}",
    "url": lambda v: f"https://example.com/sim{_suffix(v)}",
    "uri-reference": lambda v: f"/sim{_suffix(v)}",
    "iri-reference": lambda v: f"/sim{_suffix(v)}",
    "uri-template": lambda v: f"https://example.com/{{sim{_suffix(v)}}}",
    "uuid": lambda v: f"00000000-0000-4000-8000-{v % 10**12:012d}",
    "ipv4": lambda v: f"192.0.2.{1 + v % 254}",
    "ipv6": lambda v: f"2001:db8::{1 + v % 65535:x}",
    "json-pointer": lambda v: f"/sim{_suffix(v)}",
    "relative-json-pointer": lambda v: str(v),
    "regex": lambda v: f"sim{_suffix(v)}",
    "byte": lambda v: "c2lt",  # base64 of "sim"
    "base64": lambda v: "c2lt",
}


def example(schema: object) -> object:
    """A JSON value valid against `schema` (a parsed JSON schema; its root is where local $refs point)."""
    return _Generator(schema).value(schema, 0, 0)


class _Generator:
    def __init__(self, root: object) -> None:
        self._root = root
        self._nodes = 0

    def value(self, schema: object, depth: int, variant: int) -> object:
        self._nodes += 1
        if depth > _HARD_DEPTH or self._nodes > _MAX_NODES or schema is False:
            return None
        if not isinstance(schema, Mapping):
            return "sim"  # `true`, or a keyword of the wrong type: anything is valid
        schema = self._flatten(schema, 0)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[variant % len(enum)]
        branches = schema.get("anyOf", schema.get("oneOf"))
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            branch = self._branch(branches, depth)
            if not isinstance(branch, Mapping):
                return self.value(branch, depth + 1, variant)
            return self.value(_merge(rest, self._flatten(branch, 0)), depth + 1, variant)
        kind = _pick_type(schema, shallow=depth >= _SOFT_DEPTH)
        if kind == "object":
            return self._object(schema, depth, variant)
        if kind == "array":
            return self._array(schema, depth, variant)
        if kind in ("integer", "number"):
            return _number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return _string(schema, variant)  # a string, or a schema that allows any type

    def _branch(self, branches: list[Any], depth: int) -> object:
        """The anyOf/oneOf branch to follow: the first that is not null; past the soft depth, null or no $ref."""
        def is_null(branch: object) -> bool:
            return isinstance(branch, Mapping) and branch.get("type") == "null"

        if depth >= _SOFT_DEPTH:
            for branch in branches:
                if is_null(branch):
                    return branch
            for branch in branches:
                if isinstance(branch, Mapping) and "$ref" not in branch:
                    return branch
        return next((b for b in branches if not is_null(b)), branches[0])

    def _flatten(self, schema: Mapping[str, Any], hops: int) -> Mapping[str, Any]:
        """`schema` with its $ref (merged with the keywords beside it) and allOf folded into one mapping."""
        while isinstance(schema.get("$ref"), str) and hops < _MAX_HOPS:
            hops += 1
            target = self._resolve(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = _merge(target, rest) if isinstance(target, Mapping) else rest
        parts = schema.get("allOf")
        if not isinstance(parts, list) or hops >= _MAX_HOPS:
            return {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        merged: Mapping[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            if isinstance(part, Mapping):
                merged = _merge(merged, self._flatten(part, hops + 1))
        return merged

    def _resolve(self, ref: str) -> object:
        """A local $ref ("#", "#/$defs/Name", any JSON pointer); None for remote refs and anchors."""
        if ref == "#":
            return self._root
        if not ref.startswith("#/"):
            return None
        node: object = self._root
        for raw in ref[2:].split("/"):
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def _object(self, schema: Mapping[str, Any], depth: int, variant: int) -> dict[str, object]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = _names(schema.get("required"))
        extra = schema.get("additionalProperties", True)
        extra_schema = extra if isinstance(extra, Mapping) else True
        out: dict[str, object] = {}
        for name, sub in props.items():
            if depth < _SOFT_DEPTH or name in required:
                out[str(name)] = self.value(sub, depth + 1, variant)
        for name in required:  # required but not declared: the schema for undeclared keys applies
            if name not in out:
                out[name] = self.value(extra_schema, depth + 1, variant)
        wanted = min(_count(schema.get("minProperties")), _MAX_ITEMS)
        n = 0
        while len(out) < wanted and extra is not False:
            out.setdefault(f"key{n}", self.value(extra_schema, depth + 1, variant))
            n += 1
        most = _limit(schema.get("maxProperties"))
        if most is not None and len(out) > most:  # drop optional keys, last first
            for name in [k for k in reversed(out) if k not in required][: len(out) - most]:
                del out[name]
        return out

    def _array(self, schema: Mapping[str, Any], depth: int, variant: int) -> list[object]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuples: items is the list, additionalItems the rest
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        least = _count(schema.get("minItems"))
        n = least if depth >= _SOFT_DEPTH else max(least, len(prefix) if items is False else max(len(prefix), 2))
        most = _limit(schema.get("maxItems"))
        if most is not None:
            n = min(n, most)
        n = min(n, _MAX_ITEMS)
        # Numbered variants make items differ, which `uniqueItems` needs (and which reads better anyway).
        return [self.value(prefix[i] if i < len(prefix) else items, depth + 1, variant + i) for i in range(n)]


def _pick_type(schema: Mapping[str, Any], *, shallow: bool) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared if declared in _TYPES else None
    if isinstance(declared, list):
        names = [t for t in declared if isinstance(t, str) and t in _TYPES]
        if shallow and "null" in names:
            return "null"
        return next((t for t in names if t != "null"), "null" if names else None)
    # No type: what the keywords imply (OpenAPI-style and hand-written schemas often omit it).
    if any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _merge(base: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Both schemas' constraints in one mapping (allOf, $ref siblings): properties and required combine,
    bounds take the tighter, anything else from `more`."""
    out = dict(base)
    for key, value in more.items():
        old = out.get(key)
        if key == "properties" and isinstance(old, Mapping) and isinstance(value, Mapping):
            props = dict(old)
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required" and isinstance(old, list) and isinstance(value, list):
            out[key] = list(dict.fromkeys([*_names(old), *_names(value)]))
        elif _is_number(old) and _is_number(value) and key in _TIGHTER:
            out[key] = _TIGHTER[key](old, value)
        else:
            out[key] = value
    return out


_TIGHTER: dict[str, Callable[[Any, Any], Any]] = {
    **dict.fromkeys(("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"), max),
    **dict.fromkeys(("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"), min),
}


def _string(schema: Mapping[str, Any], variant: int) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt](variant)
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        found = pattern_example(pattern)
        if found is not None:
            return found
    text = f"sim{_suffix(variant)}"
    least = min(_count(schema.get("minLength")), _MAX_STRING)
    if len(text) < least:
        text += "x" * (least - len(text))
    most = _limit(schema.get("maxLength"))
    return text[:most] if most is not None else text


def _number(schema: Mapping[str, Any], integer: bool, variant: int) -> int | float:
    """1 (or 1 + variant), moved inside the bounds and onto multipleOf; an int for integers."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", upper=False)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", upper=True)
    step = schema.get("multipleOf")
    if _is_number(step) and step > 0:
        # The nearest short fraction, so 0.1 is 1/10 and its multiples print as 0.1, 0.2 (not 0.30000000000000004).
        unit = Fraction(step).limit_denominator(10**9) or Fraction(step)
        if integer:  # the integers that are multiples of p/q are the multiples of p
            unit = Fraction(unit.numerator)
        return _multiple(unit, low, low_open, high, high_open, integer, variant)
    if integer:
        lo = None if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
        return _place_int(1 + variant, lo, hi, variant)
    x = float(1 + variant)
    above = low is None or x > low or (x == low and not low_open)
    below = high is None or x < high or (x == high and not high_open)
    if above and below:
        return x
    if low is not None and high is not None:
        if low >= high:
            return float(low)  # no room: nothing is valid, the bound is the nearest thing
        share = (variant + 1) / (variant + 2)  # strictly inside, open or closed; no overflow at +-1.7e308
        return low * (1 - share) + high * share
    if low is not None:
        return float(low) + 1 + variant
    assert high is not None
    return float(high) - 1 - variant


def _multiple(unit: Fraction, low: float | None, low_open: bool, high: float | None, high_open: bool,
              integer: bool, variant: int) -> int | float:
    """unit * k for the k that `_place_int` picks between the bounds divided by unit (exact, in fractions)."""
    k_lo = k_hi = None
    if low is not None:
        k_lo = math.floor(Fraction(low) / unit) + 1 if low_open else math.ceil(Fraction(low) / unit)
    if high is not None:
        k_hi = math.ceil(Fraction(high) / unit) - 1 if high_open else math.floor(Fraction(high) / unit)
    value = unit * _place_int(1 + variant, k_lo, k_hi, variant)
    return int(value) if integer else float(value)


def _place_int(x: int, lo: int | None, hi: int | None, variant: int) -> int:
    if (lo is None or x >= lo) and (hi is None or x <= hi):
        return x
    if lo is not None and hi is not None:
        return lo + variant % (hi - lo + 1) if hi >= lo else lo
    return lo + variant if lo is not None else (hi if hi is not None else x) - variant


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, *, upper: bool) -> tuple[float | None, bool]:
    """The tightest bound and whether it is open. Draft 4's boolean exclusiveMinimum/Maximum is understood."""
    found: list[tuple[float, bool]] = []
    closed, opened = schema.get(inclusive), schema.get(exclusive)
    if _is_number(closed):
        found.append((float(closed), opened is True))
    if _is_number(opened):
        found.append((float(opened), True))
    if not found:
        return None, False
    # The tightest: the smallest upper / largest lower bound; at a tie the open one.
    if upper:
        return min(found, key=lambda b: (b[0], not b[1]))
    return max(found, key=lambda b: (b[0], b[1]))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> int:
    """A minimum count keyword (minItems, minLength, ...): 0 when absent or not a non-negative number."""
    limit = _limit(value)
    return 0 if limit is None else limit


def _limit(value: object) -> int | None:
    """A maximum count keyword (maxItems, maxLength, ...): None when absent or not a non-negative number."""
    if not _is_number(value) or value < 0:
        return None
    return int(value)


def _names(value: object) -> list[str]:
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []
