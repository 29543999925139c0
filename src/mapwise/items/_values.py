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
    """Deep equality with JSON's types: ``1 == 1.0`` but ``true != 1``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if type(left) is not type(right):
        return False
    return bool(left == right)


# json.dumps(sort_keys=True, separators=(",", ":")), without an encoder built per call
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=True).encode


def canonical_json(value: Any) -> str:
    """A text equal for equal JSON values (sorted keys, ``1.0`` written as ``1``)."""
    return _CANONICAL(_normalise(value))


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


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
