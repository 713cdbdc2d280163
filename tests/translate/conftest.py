"""Checks that translated payloads have the SDKs' exact shapes.

The SDK request params are TypedDicts, which pydantic validates lazily (`Iterable` fields) and with extra
keys ignored, so a misspelt field would pass. `shape_errors` walks the TypedDict annotations itself and
rejects unknown keys at every level. Response models (pydantic, extra="allow") are checked with
`model_extras`, which lists every field that landed in an extra slot instead of a declared one.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

import pytest
import typing_extensions
from pydantic import BaseModel

_WRAPPERS = {typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.ReadOnly}
_SEQUENCES = {list, collections.abc.Iterable, collections.abc.Sequence, typing.Iterable, typing.Sequence}


def shape_errors(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Why `value` does not match the type annotation `tp` ([] when it does)."""
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin is typing_extensions.Annotated or origin in _WRAPPERS:
        return shape_errors(value, args[0], path)
    if tp is Any or tp is object:
        return []
    if origin is typing.Union or origin is types.UnionType:
        branches = [shape_errors(value, arg, path) for arg in args]
        if any(not errors for errors in branches):
            return []
        # The branch that got deepest before failing, then with the fewest errors, is the one that was meant.
        return min(branches, key=lambda errors: (-max(len(e.split(":")[0]) for e in errors), len(errors)))
    if origin is typing_extensions.Literal or origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} not in {args}"]
    if tp is type(None):
        return [] if value is None else [f"{path}: expected null"]
    if typing_extensions.is_typeddict(tp):
        return _typeddict_errors(value, tp, path)
    if origin in _SEQUENCES or getattr(origin, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {type(value).__name__}"]
        return [error for i, item in enumerate(value) for error in shape_errors(item, args[0], f"{path}[{i}]")]
    if origin in (dict, collections.abc.Mapping, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        return [error for key, item in value.items() for error in shape_errors(item, args[1], f"{path}.{key}")]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:
        return [f"{path}: checker does not know {tp!r}"]
    return [] if ok else [f"{path}: expected {tp}, got {value!r}"]


def _typeddict_errors(value: Any, tp: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object for {tp.__name__}"]
    hints = typing_extensions.get_type_hints(tp, include_extras=True)
    errors = [f"{path}: unknown key {key!r} for {tp.__name__}" for key in value if key not in hints]
    errors += [f"{path}: missing {key!r} for {tp.__name__}" for key in tp.__required_keys__ if key not in value]
    for key, item in value.items():
        if key in hints:
            errors += shape_errors(item, hints[key], f"{path}.{key}")
    return errors


def model_extras(model: BaseModel, path: str = "$") -> list[str]:
    """Every field of a validated SDK model (and its sub-models) that is not a declared field."""
    found = [f"{path}.{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        found += _extras_in(getattr(model, name), f"{path}.{name}")
    return found


def _extras_in(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return model_extras(value, path)
    if isinstance(value, list):
        return [extra for i, item in enumerate(value) for extra in _extras_in(item, f"{path}[{i}]")]
    return []


@pytest.fixture
def assert_shape() -> Any:
    def check(value: Any, tp: Any) -> None:
        errors = shape_errors(value, tp)
        assert not errors, "\n".join(errors)

    return check


@pytest.fixture
def assert_no_extras() -> Any:
    def check(model: BaseModel) -> None:
        extras = model_extras(model)
        assert not extras, f"fields the SDK model does not declare: {extras}"

    return check
