"""The ``map.sort_by`` clause: ``"filename ASC, location.row DESC NULLS LAST"``.

Comma-separated keys; each is a field path, then optionally ``ASC``/``DESC`` (also
``ASCENDING``/``DESCENDING``, any case; default ASC), then optionally ``NULLS FIRST`` or
``NULLS LAST`` (default LAST whatever the direction). A missing field counts as null.

The sort is stable and never raises. Values of different types are ordered by type:
booleans < numbers < strings < arrays < objects (DESC reverses this too); within a type
the natural order, with arrays and objects compared by their canonical JSON text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mapwise.fields import MISSING

from ._values import order_key
from .filter import Getter, field_getter

_DIRECTIONS: Final = {"ASC": False, "ASCENDING": False, "DESC": True, "DESCENDING": True}
_NULLS: Final = {"FIRST": True, "LAST": False}


class SortSyntaxError(ValueError):
    """A ``sort_by`` clause that cannot be parsed; the message names the bad key."""


@dataclass(frozen=True)
class SortKey:
    """One key of a sort clause."""

    path: str
    descending: bool = False
    nulls_first: bool = False


def parse_sort(expr: str) -> list[SortKey]:
    """Parse a sort clause into its keys; raise SortSyntaxError if malformed."""
    if not expr.strip():
        raise SortSyntaxError("sort_by is empty")
    keys = []
    for number, chunk in enumerate(expr.split(","), start=1):
        keys.append(_parse_key(chunk, number, expr))
    return keys


def _parse_key(chunk: str, number: int, expr: str) -> SortKey:
    """Parse ``path [ASC|DESC] [NULLS FIRST|LAST]``."""
    words = chunk.split()
    where = f"key {number} ({chunk.strip()!r}) of sort_by {expr!r}"
    if not words:
        raise SortSyntaxError(f"empty {where}")
    path, rest = words[0], [w.upper() for w in words[1:]]
    try:
        field_getter(path)
    except ValueError as exc:
        raise SortSyntaxError(f"{exc} in {where}") from exc
    descending = False
    if rest and rest[0] in _DIRECTIONS:
        descending = _DIRECTIONS[rest.pop(0)]
    nulls_first = False
    if rest and rest[0] == "NULLS":
        if len(rest) < 2 or rest[1] not in _NULLS:
            raise SortSyntaxError(f"NULLS must be followed by FIRST or LAST in {where}")
        nulls_first = _NULLS[rest[1]]
        rest = rest[2:]
    if rest:
        raise SortSyntaxError(
            f"unexpected {words[len(words) - len(rest)]!r} in {where}; "
            "expected ASC, DESC, NULLS FIRST or NULLS LAST"
        )
    return SortKey(path, descending, nulls_first)


def _key_function(key: SortKey) -> Callable[[Any], tuple[int, Any]]:
    """A sort key for one pass of Python's stable sort.

    ``reverse=True`` is used for DESC, so the null rank is chosen to land nulls where
    asked after the reversal; all nulls compare equal to keep their order.
    """
    get: Getter = field_getter(key.path)
    # Without reversal, rank 0 sorts first; with reversal, rank 1 does.
    null_rank = 0 if key.nulls_first != key.descending else 1
    value_rank = 1 - null_rank

    def sort_key(item: Any) -> tuple[int, Any]:
        value = get(item)
        if value is MISSING or value is None:
            return (null_rank, (0, 0))
        return (value_rank, order_key(value))

    return sort_key


def compile_sort(expr: str) -> Callable[[list[Any]], list[Any]]:
    """Compile a sort clause into a function returning a new, sorted list."""
    keys = [(_key_function(key), key.descending) for key in parse_sort(expr)]

    def sort(items: list[Any]) -> list[Any]:
        result = list(items)
        # Least significant key first: each stable pass keeps the previous order on ties.
        for key_function, descending in reversed(keys):
            result.sort(key=key_function, reverse=descending)
        return result

    return sort
