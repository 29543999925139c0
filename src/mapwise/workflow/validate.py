"""Validating normalised workflow data against the model, with messages people can act on.

pydantic's errors name a ``loc`` in the normalised data and say things like "Input
should be greater than or equal to 1". This module turns each into a ``Problem`` at the
file line the value came from, with the dotted key the user wrote and a short message:
"must be at least 1", "unknown key 'maxparallel' (did you mean 'max_parallel'?)",
"expected a number, got 'abc'".
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mapwise.workflow.locate import Loc, Locator, Problem, Problems, describe, unknown_key
from mapwise.workflow.model import Workflow

_PATTERN_HINTS: Final = {
    "name": "must use only letters, digits, '.', '_' and '-'",
    "capture": "must be a variable name (letters, digits and '_', not starting with a digit)",
}


@dataclass(frozen=True)
class _Seq:
    """The type of a tuple field's items (``tuple[Step, ...]`` -> Step)."""

    item: Any


def validate(data: dict[str, Any], locator: Locator) -> Workflow:
    """Build the ``Workflow``; raise ``Problems`` with every mistake, each at its line."""
    problems = list(_bools_as_numbers(data, (), locator))
    if problems:
        raise Problems(problems)
    try:
        return Workflow.model_validate(data)
    except ValidationError as exc:
        raise Problems(_translate(exc.errors(), data, locator)) from None


def _translate(errors: list[ErrorDetails], data: Any, locator: Locator) -> list[Problem]:
    """One problem per distinct location, minus errors that only echo another one."""
    cleaned: dict[Loc, ErrorDetails] = {}
    for error in errors:
        loc = _real_loc(tuple(error["loc"]), data)
        cleaned.setdefault(loc, error)
    kept = [(loc, err) for loc, err in cleaned.items() if not _echo(loc, err, cleaned)]
    return [_problem(loc, err, locator) for loc, err in kept]


def _real_loc(loc: Loc, data: Any) -> Loc:
    """Cut the union-member tags pydantic appends (``max_parallel.int``) off ``loc``."""
    current = data
    for depth, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str):
            if part not in current:
                return loc[: depth + 1]
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            return loc[:depth]
    return loc


def _echo(loc: Loc, error: ErrorDetails, errors: dict[Loc, ErrorDetails]) -> bool:
    """Errors caused by another error: a too-short list whose items failed, or a step
    with "no kind" whose kind is an unknown (misspelt) key."""
    deeper = [other for other in errors if len(other) > len(loc) and other[: len(loc)] == loc]
    if error["type"] == "too_short":
        return bool(deeper)
    if error["type"] == "value_error" and "exactly one of" in error["msg"]:
        return any(errors[other]["type"] == "extra_forbidden" for other in deeper)
    return False


def _problem(loc: Loc, error: ErrorDetails, locator: Locator) -> Problem:
    kind = error["type"]
    if kind == "extra_forbidden":
        message = unknown_key(str(loc[-1]), _allowed_keys(loc[:-1]))
        return locator.problem(loc, message, key_loc=loc[:-1])
    if kind == "missing":
        return locator.problem(loc[:-1], f"missing required key {loc[-1]!r}")
    return locator.problem(loc, _message(loc, error))


def _message(loc: Loc, error: ErrorDetails) -> str:
    """A short message for a value pydantic rejected."""
    kind, ctx, got = error["type"], error.get("ctx", {}), describe(error.get("input"))
    last = loc[-1] if loc else ""
    simple = {
        "greater_than_equal": f"must be at least {_number(ctx.get('ge'))}",
        "greater_than": f"must be greater than {_number(ctx.get('gt'))}",
        "less_than_equal": f"must be at most {_number(ctx.get('le'))}",
        "less_than": f"must be less than {_number(ctx.get('lt'))}",
        "string_too_short": "must not be empty",
        "enum": f"must be one of {ctx.get('expected')}, got {got}",
        "literal_error": f"must be {ctx.get('expected')}, got {got}",
    }
    if kind in simple:
        return simple[kind]
    if last == "max_parallel" and kind in ("int_type", "string_type", "int_parsing"):
        return f'must be a number or "${{VAR}}" naming an env variable, got {got}'
    return _type_message(kind, error, last, got)


def _number(value: Any) -> Any:
    """``1.0`` -> ``1``: bounds read as the user would write them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _type_message(kind: str, error: ErrorDetails, last: str | int, got: str) -> str:
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "string_type":
        return f"expected a string, got {got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {got}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {got}"
    if kind == "too_short":
        if last in ("agent_template",):
            return "must have at least one step"
        return f"must have at least {error.get('ctx', {}).get('min_length')} item(s)"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(last), "has an invalid form")
        return f"{hint}, got {got}"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ").removeprefix(f"{last} ")
    return str(error["msg"])


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys the model accepts in the mapping at ``loc`` (for did-you-mean)."""
    current = _type_at(loc)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _type_at(loc: Loc) -> Any:
    """The (unwrapped) model type of the value at ``loc``, or None if not a model."""
    current: Any = Workflow
    for part in loc:
        if isinstance(current, _Seq) and isinstance(part, int):
            current = current.item
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = _unwrap(field.annotation)
        else:
            return None
    return current


def _unwrap(annotation: Any) -> Any:
    """``Step | None`` -> Step; ``tuple[Step, ...]`` -> _Seq(Step); others unchanged."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return _Seq(_unwrap(typing.get_args(annotation)[0]))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    return annotation


def _field_annotation(loc: Loc) -> Any:
    """The raw annotation of the model field at ``loc`` (None if ``loc`` is no field)."""
    parent = _type_at(loc[:-1]) if loc else None
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        field = parent.model_fields.get(str(loc[-1]))
        return None if field is None else field.annotation
    return None


def _is_numeric(annotation: Any) -> bool:
    """A field that takes a number but not a bool (pydantic would read true as 1)."""
    args = set(typing.get_args(annotation)) or {annotation}
    return bool(args & {int, float}) and bool not in args


def _bools_as_numbers(value: Any, loc: Loc, locator: Locator) -> list[Problem]:
    """``max_parallel: true`` and friends: refuse them instead of reading 1."""
    if isinstance(value, bool):
        if loc and _is_numeric(_field_annotation(loc)):
            return [locator.problem(loc, f"expected a number, got {describe(value)}")]
        return []
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        children = [(k, v) for k, v in value.items() if isinstance(k, str)]
    elif isinstance(value, list):
        children = list(enumerate(value))
    problems: list[Problem] = []
    for part, child in children:
        problems.extend(_bools_as_numbers(child, (*loc, part), locator))
    return problems
