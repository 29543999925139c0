"""How JSON values compare, shared by filter, sort and distinct.

Python's own ``==`` says ``True == 1`` and ``1 == 1.0``; JSON says booleans are not
numbers but ``1`` and ``1.0`` are the same number. These helpers follow JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Rank of each JSON type when values of different types are sorted together.
TYPE_RANK_BOOL = 0
TYPE_RANK_NUMBER = 1
TYPE_RANK_STRING = 2
TYPE_RANK_ARRAY = 3
TYPE_RANK_OBJECT = 4


def is_number(value: Any) -> bool:
    """True for a JSON number (an int or float that is not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def truth(value: Any) -> bool:
    """A value in a boolean position is true only if it is JSON ``true``."""
    return value is True


def json_equal(left: Any, right: Any) -> bool:
    """Deep equality with JSON's types: ``1 == 1.0`` but ``true != 1``.

    Iterative, with an explicit stack: an item nested hundreds of levels deep compares
    without a ``RecursionError``.
    """
    pending: list[tuple[Any, Any]] = [(left, right)]
    while pending:
        a, b = pending.pop()
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[k], b[k]) for k in a)
        elif not _scalar_equal(a, b):
            return False
    return True


def _scalar_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    return bool(left == right)


# json.dumps(sort_keys=True, separators=(",", ":")), without an encoder built per call
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=True).encode


def canonical_json(value: Any) -> str:
    """A text equal for equal JSON values (sorted keys, ``1.0`` written as ``1``).

    Deeply nested values (past what the C encoder's recursion allows) are written by an
    iterative encoder that gives the same text, so no item depth raises ``RecursionError``.
    """
    try:
        return _CANONICAL(_normalise(value))
    except RecursionError:
        return _canonical_iterative(value)


def _normalise_scalar(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _normalise(value: Any) -> Any:
    """``value`` with integral floats as ints; iterative (an explicit stack)."""
    if not isinstance(value, list | dict):
        return _normalise_scalar(value)
    root: list[Any] = [None]
    pending: list[tuple[Any, Any, Any]] = [(value, root, 0)]  # (source, parent, slot)
    while pending:
        source, parent, slot = pending.pop()
        if isinstance(source, list):
            copy: Any = [None] * len(source)
            pending.extend((v, copy, i) for i, v in enumerate(source))
        elif isinstance(source, dict):
            copy = dict.fromkeys(source)
            pending.extend((v, copy, k) for k, v in source.items())
        else:
            copy = _normalise_scalar(source)
        parent[slot] = copy
    return root[0]


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _canonical_iterative(value: Any) -> str:
    """The text of :func:`canonical_json`, written without recursion."""
    parts: list[str] = []
    # each entry is either a value to write or a piece of text already written (_Text)
    pending: list[Any] = [value]
    while pending:
        top = pending.pop()
        if isinstance(top, _Text):
            parts.append(top.text)
        elif isinstance(top, list):
            todo: list[Any] = [_Text("[")]
            for index, element in enumerate(top):
                if index:
                    todo.append(_Text(","))
                todo.append(element)
            todo.append(_Text("]"))
            pending.extend(reversed(todo))
        elif isinstance(top, dict):
            todo = [_Text("{")]
            for index, key in enumerate(sorted(top)):
                todo.append(_Text(("," if index else "") + _CANONICAL(key) + ":"))
                todo.append(top[key])
            todo.append(_Text("}"))
            pending.extend(reversed(todo))
        else:
            parts.append(_CANONICAL(_normalise_scalar(top)))
    return "".join(parts)


def order_key(value: Any) -> tuple[Any, ...]:
    """A key that orders any non-null JSON value without raising.

    Booleans < numbers < strings < arrays < objects; within a type, the natural order
    (false < true, numeric, code point), NaN after every other number, and arrays and
    objects by their canonical JSON text. The key is flat: the type's rank decides
    what follows it.
    """
    if isinstance(value, bool):
        return (TYPE_RANK_BOOL, int(value))
    if is_number(value):
        return (TYPE_RANK_NUMBER, 1, 0.0) if math.isnan(value) else (TYPE_RANK_NUMBER, 0, value)
    if isinstance(value, str):
        return (TYPE_RANK_STRING, value)
    if isinstance(value, list):
        return (TYPE_RANK_ARRAY, canonical_json(value))
    return (TYPE_RANK_OBJECT, canonical_json(value))
