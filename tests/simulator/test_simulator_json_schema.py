"""The schema-driven example generator behind structured answers and tool arguments (no server involved)."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from anthropic.lib._parse._transform import transform_schema
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from gateway.simulator.json_schema import example
from gateway.simulator.regex_example import pattern_example


def assert_valid(schema: Any, value: object) -> None:
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    name: str = Field(min_length=5, max_length=8)
    qty: int = Field(gt=0, le=10, multiple_of=3)
    price: float = Field(ge=0.5, lt=2)
    code: str = Field(pattern=r"^[A-Z]{3}-\d{2}$")


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


class Order(BaseModel):
    items: list[Item]
    color: Color
    note: str | None = None
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    tree: Tree
    when: datetime
    day: date
    at: time
    took: timedelta
    id: UUID
    tags: set[str]
    pair: tuple[int, str]
    below: float = Field(lt=-3)


@pytest.mark.parametrize("schema", [Order.model_json_schema(), to_strict_json_schema(Order)],
                         ids=["pydantic", "openai-strict"])
def test_pydantic_models_validate_against_schema_and_model(schema: dict[str, Any]) -> None:
    value = example(schema)
    assert_valid(schema, value)
    order = Order.model_validate_json(json.dumps(value))
    assert order.items and order.items[0].code == "AAA-00"  # the pattern was honoured, not ignored
    assert len(order.tags) == 2  # set[str] is uniqueItems: the two items differ
    assert order.tree.children  # recursion is followed a few levels, then ends
    assert example(schema) == value  # deterministic


def test_anthropic_transformed_schema_validates() -> None:
    # The Anthropic SDK rewrites schemas (additionalProperties false, format "text", constraints into the
    # description); the answer must still match what was sent.
    schema = transform_schema(Order)
    assert_valid(schema, example(schema))


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string"}, "sim"),
    ({"type": "integer", "minimum": 5}, 5),
    ({"type": "integer", "exclusiveMaximum": -2}, -3),
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, 0.5),
    ({"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 7}, 7),
    ({"type": "number", "multipleOf": 0.25, "minimum": 1.1}, 1.25),
    ({"type": "boolean"}, True),
    ({"type": ["null", "string"]}, "sim"),
    ({"enum": ["b", "a"]}, "b"),
    ({"const": {"x": [1]}}, {"x": [1]}),
    ({"type": "string", "minLength": 5}, "simxx"),
    ({"type": "string", "maxLength": 2}, "si"),
    ({"type": "string", "format": "email"}, "sim@example.com"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 1}, [1]),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True}, [1, 2, 3]),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}, [1, "sim1"]),
    ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 1),
    ({"allOf": [{"properties": {"a": {"type": "integer"}}}, {"required": ["b"]}]}, {"a": 1, "b": "sim"}),
    ({"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}}, {"key0": 1, "key1": 1}),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["b"],
      "maxProperties": 1}, {"b": 1}),
    ({"$ref": "#/definitions/A", "definitions": {"A": {"type": "integer", "minimum": 9}}}, 9),
    ({}, "sim"),
    (True, "sim"),
])
def test_keywords(schema: Any, expected: object) -> None:
    value = example(schema)
    assert value == expected
    assert_valid(schema, value)


def test_recursive_schema_with_a_required_cycle_still_ends() -> None:
    # No finite instance exists (next is required all the way down): the generator must stop, not recurse forever.
    schema = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}, "required": ["next"]}},
              "$ref": "#/$defs/N"}
    depth, node = 0, example(schema)
    while isinstance(node, dict):
        node, depth = node["next"], depth + 1
    assert node is None and 8 < depth < 100


def test_ref_cycles_and_exponential_fan_out_are_bounded() -> None:
    assert example({"$ref": "#"}) == "sim"  # a $ref to itself: nothing to follow
    assert example({"$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"}) == "sim"
    # Each level holds ten of the next: 10**12 values if followed, bounded by the node budget instead.
    defs = {f"L{i}": {"type": "object", "properties": {f"p{j}": {"$ref": f"#/$defs/L{i + 1}"} for j in range(10)},
                      "required": [f"p{j}" for j in range(10)]} for i in range(12)}
    defs["L12"] = {"type": "integer"}
    value = example({"$defs": defs, "$ref": "#/$defs/L0"})
    assert len(json.dumps(value)) < 2_000_000


@pytest.mark.parametrize("schema", [
    {"type": "number", "minimum": -1.7e308, "maximum": 1.7e308, "exclusiveMinimum": 0},
    {"type": "number", "exclusiveMinimum": -1.7e308, "exclusiveMaximum": -1.6e308},
    {"type": "number", "multipleOf": 1e-300, "minimum": 0.5},
    {"type": "integer", "multipleOf": 2.5, "exclusiveMinimum": 3},
])
def test_extreme_numbers_stay_valid(schema: Any) -> None:
    assert_valid(schema, example(schema))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": "nope", "required": 5}, {"type": "array", "items": 5, "minItems": "x"},
    {"type": "integer", "minimum": "1", "multipleOf": -2}, {"type": 7}, {"anyOf": []}, {"$ref": 5},
    {"$ref": "other.json#/x"}, {"type": "string", "pattern": "(unclosed"}, {"type": "array", "minItems": 10**9},
    {"type": "string", "minLength": 10**9}, {"type": "integer", "minimum": 5, "maximum": 1}, [1, 2], None, False,
])
def test_malformed_or_unsatisfiable_schemas_never_raise(schema: Any) -> None:
    json.dumps(example(schema))  # some JSON value, whatever it is


@pytest.mark.parametrize("pattern", [r"^\d{3}-\d{4}$", r"^[A-Z]{2}$", r"^(foo|bar)+baz$", r"[^abc]x", r"^(a)\1$",
                                     r"^\S+@\S+\.\S+$", r"^[+-]?\d*\.?\d+$", r"(?i)^abc$", "^sk-[a-zA-Z0-9]{20,}$"])
def test_patterns_get_a_matching_string(pattern: str) -> None:
    value = example({"type": "string", "pattern": pattern})
    assert value != "sim" and pattern_example(pattern) == value
    assert_valid({"type": "string", "pattern": pattern}, value)


# ---- any schema from a grammar of satisfiable ones ------------------------------------------------------------

def _numbers(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    def build(lo: int, gap: int, exclusive: bool, sides: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": kind}
        if sides in ("lo", "both"):
            schema["exclusiveMinimum" if exclusive else "minimum"] = lo
        if sides in ("hi", "both"):
            schema["exclusiveMaximum" if exclusive else "maximum"] = lo + gap
        return schema
    return st.builds(build, st.integers(-1000, 1000), st.integers(2, 50), st.booleans(),
                     st.sampled_from(["none", "lo", "hi", "both"]))


def _strings() -> st.SearchStrategy[dict[str, Any]]:
    lengths = st.tuples(st.integers(0, 20), st.integers(0, 20)).map(
        lambda p: {"type": "string", "minLength": min(p), "maxLength": max(p)})
    formats = st.sampled_from(["date-time", "date", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname",
                               "duration"]).map(lambda f: {"type": "string", "format": f})
    return st.one_of(st.just({"type": "string"}), lengths, formats)


_leaves = st.one_of(_strings(), _numbers("integer"), _numbers("number"), st.just({"type": "boolean"}),
                    st.just({"type": "null"}), st.lists(st.text(max_size=5), min_size=1, max_size=4,
                                                        unique=True).map(lambda e: {"enum": e}))


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def obj(props: dict[str, dict[str, Any]], data: st.DataObject, closed: bool) -> dict[str, Any]:
        required = data.draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
        return {"type": "object", "properties": props, "required": required, "additionalProperties": not closed}

    objects = st.builds(obj, st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4), st.data(),
                        st.booleans())
    arrays = st.builds(lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo,
                                                 "maxItems": lo + extra}, children, st.integers(0, 3),
                       st.integers(0, 3))
    unions = st.lists(children, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
    nullable = children.map(lambda c: {"anyOf": [c, {"type": "null"}]})
    return st.one_of(objects, arrays, unions, nullable)


@settings(max_examples=200, deadline=None)
@given(st.recursive(_leaves, _extend, max_leaves=12))
def test_any_generated_schema_is_satisfied(schema: dict[str, Any]) -> None:
    assert_valid(schema, example(schema))
